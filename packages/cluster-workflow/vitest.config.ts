import { packageProject } from "../../vitest.project.js"
import { processFiles } from "./vitest.processes.config.js"

// (the files that run processes are a project of their own: vitest.processes.config.ts)
export default packageProject({
  name: "cluster-workflow",
  include: ["test/**/*.test.ts"],
  exclude: processFiles,
  testTimeout: 60_000
})
