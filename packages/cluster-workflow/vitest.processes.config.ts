import { packageProject } from "../../vitest.project.js"

/**
 * The files whose tests run pods, managers or engines as separate processes (killed, paused, restarted):
 * they run one at a time, after the others, so that no other test file competes with their processes for
 * the machine's cores (a starved pod loses its lease). See the root vitest.config.ts.
 */
export const processFiles = [
  "test/ClusterChaos.test.ts",
  "test/ClusterProcesses.test.ts",
  "test/RealCrash.test.ts",
  "test/TwoProcess.test.ts",
  "test/Liveness.test.ts",
  "test/SqlitePidNamespace.test.ts"
]

export default packageProject({ name: "cluster-workflow (processes)", include: processFiles, testTimeout: 60_000, processes: true })
