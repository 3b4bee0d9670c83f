import { defineConfig } from "vitest/config"

// One project per package. CI (CI=true) also writes vitest's JSON report, which .ci/run reads to print
// its `N passed, N failed` line.
export default defineConfig({
  test: {
    projects: ["packages/*/vitest.config.ts", "examples/vitest.config.ts"],
    reporters: process.env.CI ? ["default", "json"] : ["default"],
    outputFile: { json: ".vitest-report.json" }
  }
})
