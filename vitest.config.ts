import { defineConfig } from "vitest/config"

// One project per package. CI (CI=true) also writes vitest's JSON report, which .ci/run reads to print
// its `N passed, N failed` line.
export default defineConfig({
  test: {
    projects: ["packages/*/vitest.config.ts", "examples/vitest.config.ts"],
    // A worker process runs its files one after another, sharing loaded modules: loading effect and the
    // packages afresh for each file cost about 2 s a file, a third of the whole run. Every file cleans up what
    // it starts (scoped layers, servers, spawned processes), so none sees another's state.
    isolate: false,
    reporters: process.env.CI ? ["default", "json"] : ["default"],
    outputFile: { json: ".vitest-report.json" }
  }
})
