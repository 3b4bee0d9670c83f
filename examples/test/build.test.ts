/**
 * The BUILT packages (dist/, what npm users get) load and run in plain Node, as ESM and as CommonJS.
 *
 * `pnpm test` builds both packages before vitest runs. Each check spawns `node` (no tsx, no "source"
 * condition, NODE_OPTIONS cleared) at the repository root, so `@effect-cluster/*` resolve through
 * node_modules to the packages' `exports` maps and therefore to dist/.
 */
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")

const builtFiles = [
  "packages/cluster/dist/index.js",
  "packages/cluster/dist/index.cjs",
  "packages/cluster/dist/index.d.ts",
  "packages/cluster/dist/index.d.cts",
  "packages/cluster-workflow/dist/index.js",
  "packages/cluster-workflow/dist/index.cjs",
  "packages/cluster-workflow/dist/index.d.ts",
  "packages/cluster-workflow/dist/index.d.cts",
  "packages/cluster-workflow/dist/node/Sqlite.js",
  "packages/cluster-workflow/dist/node/Sqlite.cjs"
]

const runNode = (format: "esm" | "cjs", code: string) => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env["NODE_OPTIONS"]
  const result = spawnSync(
    process.execPath,
    [format === "esm" ? "--input-type=module" : "--input-type=commonjs", "--eval", code],
    { cwd: root, env, encoding: "utf8", timeout: 60_000 }
  )
  const stdout = result.stdout ?? ""
  const stderr = result.stderr ?? ""
  const lastLine = stdout.trim().split("\n").at(-1) ?? ""
  return { status: result.status, signal: result.signal, stdout, stderr, lastLine, error: result.error }
}

const expectOk = (run: ReturnType<typeof runNode>) => {
  expect(run.error, `spawn failed: ${String(run.error)}`).toBeUndefined()
  expect(run.status, `node exited with ${run.status} (${run.signal ?? "no signal"})\n${run.stderr}${run.stdout}`).toBe(0)
}

// The same check, written once for both module systems. `load` is an import or a require of a specifier;
// `where` resolves a specifier to a file path.
const exportsCheck = (load: (specifier: string) => string, where: (specifier: string) => string) => `
${load("@effect-cluster/cluster")}
${load("@effect-cluster/cluster-workflow")}
${load("@effect-cluster/cluster-workflow/sqlite")}
const types = (mod, names) => Object.fromEntries(names.map((name) => {
  const value = name.split(".").reduce((acc, key) => (acc == null ? undefined : acc[key]), mod)
  return [name, typeof value]
}))
console.log(JSON.stringify({
  resolved: {
    cluster: ${where("@effect-cluster/cluster")},
    workflow: ${where("@effect-cluster/cluster-workflow")},
    sqlite: ${where("@effect-cluster/cluster-workflow/sqlite")}
  },
  cluster: types(m0, ["Message.TaggedMessage", "Message.isMessageWithResult", "Message.exitSchema", "ShardId.make", "Sharding.Sharding"]),
  workflow: types(m1, [
    "Activity.make", "Activity.currentAttempt", "Activity.persistenceId",
    "Workflow.make", "Workflow.union",
    "WorkflowEngine.makeScoped",
    "WorkflowContext.appendToPersistenceId",
    "DurableExecutionJournal.DurableExecutionJournal",
    "DurableExecutionJournalInMemory.activityJournalInMemory",
    "CrashableRuntime"
  ]),
  sqlite: types(m2, ["layer", "layerClient"])
}))
`

// A tiny 2024-style workflow run entirely on the built code.
const seedRun = `
class Ping extends Message.TaggedMessage()("Ping", Schema.String, Schema.Number, { id: Schema.String, n: Schema.Number }, (_) => _.id) {}
const double = (n) => Activity.make("double-" + n, Schema.Number, Schema.String)(Effect.succeed(n * 2))
const workflow = Workflow.make(Ping, (message) => Effect.flatMap(double(message.n), (x) => double(x)))
const program = Effect.gen(function* () {
  const engine = yield* WorkflowEngine.makeScoped(workflow)
  return yield* engine.send(new Ping({ id: "ping-1", n: 5 }))
})
Effect.runPromise(program.pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped))
  .then((result) => console.log(JSON.stringify({ result })), (error) => { console.error(error); process.exit(1) })
`

const expectedExports = {
  cluster: {
    "Message.TaggedMessage": "function",
    "Message.isMessageWithResult": "function",
    "Message.exitSchema": "function",
    "ShardId.make": "function",
    "Sharding.Sharding": "object"
  },
  workflow: {
    "Activity.make": "function",
    "Activity.currentAttempt": "object",
    "Activity.persistenceId": "object",
    "Workflow.make": "function",
    "Workflow.union": "function",
    "WorkflowEngine.makeScoped": "function",
    "WorkflowContext.appendToPersistenceId": "function",
    "DurableExecutionJournal.DurableExecutionJournal": "function",
    "DurableExecutionJournalInMemory.activityJournalInMemory": "object",
    CrashableRuntime: "object"
  },
  sqlite: { layer: "function", layerClient: "function" }
}

const expectDist = (resolved: Record<string, string>, extension: ".js" | ".cjs") => {
  for (const [name, file] of Object.entries(resolved)) {
    expect(file, `${name} resolved outside dist/`).toMatch(/[\\/]dist[\\/]/)
    expect(file.endsWith(extension), `${name} resolved to ${file}`).toBe(true)
  }
}

describe("built packages in plain Node", () => {
  it("pnpm build produced ESM, CJS and .d.ts entry points", () => {
    const missing = builtFiles.filter((file) => !existsSync(join(root, file)))
    expect(missing, "missing build outputs: run `pnpm build` (the test command does) first").toEqual([])
  })

  it("ESM: import resolves to dist/ and has the expected exports", () => {
    const run = runNode(
      "esm",
      exportsCheck(
        (s) => `import * as m${["@effect-cluster/cluster", "@effect-cluster/cluster-workflow", "@effect-cluster/cluster-workflow/sqlite"].indexOf(s)} from ${JSON.stringify(s)}`,
        (s) => `(await import("node:url")).fileURLToPath(import.meta.resolve(${JSON.stringify(s)}))`
      )
    )
    expectOk(run)
    const out = JSON.parse(run.lastLine)
    expectDist(out.resolved, ".js")
    expect(out.cluster).toEqual(expectedExports.cluster)
    expect(out.workflow).toEqual(expectedExports.workflow)
    expect(out.sqlite).toEqual(expectedExports.sqlite)
  })

  it("CJS: require resolves to dist/ and has the expected exports", () => {
    const run = runNode(
      "cjs",
      exportsCheck(
        (s) => `const m${["@effect-cluster/cluster", "@effect-cluster/cluster-workflow", "@effect-cluster/cluster-workflow/sqlite"].indexOf(s)} = require(${JSON.stringify(s)})`,
        (s) => `require.resolve(${JSON.stringify(s)})`
      )
    )
    expectOk(run)
    const out = JSON.parse(run.lastLine)
    expectDist(out.resolved, ".cjs")
    expect(out.cluster).toEqual(expectedExports.cluster)
    expect(out.workflow).toEqual(expectedExports.workflow)
    expect(out.sqlite).toEqual(expectedExports.sqlite)
  })

  it("ESM: a 2024-style workflow runs on the built code", () => {
    const run = runNode(
      "esm",
      `import { Message } from "@effect-cluster/cluster"
import { Activity, DurableExecutionJournalInMemory, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { Effect, Schema } from "effect"
${seedRun}`
    )
    expectOk(run)
    expect(JSON.parse(run.lastLine)).toEqual({ result: 20 })
  })

  it("CJS: a 2024-style workflow runs on the built code", () => {
    const run = runNode(
      "cjs",
      `const { Message } = require("@effect-cluster/cluster")
const { Activity, DurableExecutionJournalInMemory, Workflow, WorkflowEngine } = require("@effect-cluster/cluster-workflow")
const { Effect, Schema } = require("effect")
${seedRun}`
    )
    expectOk(run)
    expect(JSON.parse(run.lastLine)).toEqual({ result: 20 })
  })
})
