import { defineConfig } from "vitest/config"

// One project per package, and one for each package's files that run processes. CI (CI=true) also writes
// vitest's JSON report, which .ci/run reads to print its `N passed, N failed` line.
export default defineConfig({
  test: {
    projects: ["{packages/*,examples}/vitest.config.ts", "{packages/*,examples}/vitest.processes.config.ts"],
    // Two test files at a time (vitest uses one worker on 2 cores by default): most files wait on the live clock,
    // the database or sockets more than they compute. The files that run processes run one at a time after the
    // others (their projects, `vitest.processes.config.ts`, set `singleFork`), so nothing competes with their
    // processes. (Full run on 2 cores: 1,136 s with one file at a time, 655-703 s with this.)
    maxWorkers: 2,
    // A worker process runs its files one after another, sharing loaded modules: loading effect and the
    // packages afresh for each file cost about 2 s a file, a third of the whole run. Every file cleans up what
    // it starts (scoped layers, servers, spawned processes), so none sees another's state.
    isolate: false,
    reporters: process.env.CI ? ["default", "json"] : ["default"],
    outputFile: { json: ".vitest-report.json" }
  }
})
