import { defineProject } from "vitest/config"
import { processFiles } from "./vitest.processes.config.js"

export default defineProject({
  ssr: { resolve: { conditions: ["source"] } },
  resolve: { conditions: ["source"] },
  test: {
    name: "cluster-workflow",
    include: ["test/**/*.test.ts"],
    // (run on their own: vitest.processes.config.ts)
    exclude: processFiles,
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
