import { defineProject } from "vitest/config"
import { processFiles } from "./vitest.processes.config.js"

export default defineProject({
  ssr: { resolve: { conditions: ["source"] } },
  resolve: { conditions: ["source"] },
  test: {
    name: "examples",
    include: ["test/**/*.test.ts"],
    // (run on their own: vitest.processes.config.ts)
    exclude: processFiles,
    testTimeout: 120_000,
    hookTimeout: 60_000
  }
})
