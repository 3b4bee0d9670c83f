import { packageProject } from "../vitest.project.js"

/**
 * The files whose tests start the examples as processes (a manager and pods, the demo, its Ctrl-C): they
 * run one at a time, after the other test files, so that nothing competes with their processes for the
 * machine's cores. See the root vitest.config.ts.
 */
export const processFiles = [
  "test/cluster-processes.test.ts",
  "test/cluster-quickstart.test.ts",
  "test/concepts.test.ts",
  "test/demo.test.ts",
  "test/demoCtrlC.test.ts",
  "test/examples.test.ts",
  "test/seed-on-cluster.test.ts"
]

export default packageProject({ name: "examples (processes)", include: processFiles, testTimeout: 120_000, processes: true })
