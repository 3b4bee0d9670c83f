import { defineProject } from "vitest/config"

export default defineProject({
  ssr: { resolve: { conditions: ["source"] } },
  resolve: { conditions: ["source"] },
  test: {
    name: "examples",
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000
  }
})
