import { packageProject } from "../../vitest.project.js"

/**
 * The files whose tests run pods, managers or engines as separate processes (killed, paused, restarted):
 * they run one at a time, after the others, so that no other test file competes with their processes for
 * the machine's cores (a starved pod loses its lease). See the root vitest.config.ts.
 */
export const processFiles = [
  "test/MultiProcess.test.ts", "test/Cli.test.ts", "test/SqliteBusy.test.ts", "test/Tls.test.ts"
]

export default packageProject({ name: "cluster (processes)", include: processFiles, testTimeout: 60_000, processes: true })
