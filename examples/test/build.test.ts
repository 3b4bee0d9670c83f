/**
 * The BUILT packages (dist/, what npm users get) load and run in plain Node, as ESM and as CommonJS, by
 * their root entries and by one subpath per public module (`@effect-cluster/cluster/Sharding`, ...).
 *
 * `pnpm test` builds both packages before vitest runs. Each check spawns `node` (no tsx, no "source"
 * condition, NODE_OPTIONS cleared) at the repository root, so `@effect-cluster/*` resolve through
 * node_modules to the packages' `exports` maps and therefore to dist/.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")

const builtFiles = [
  "packages/cluster/dist/esm/index.js",
  "packages/cluster/dist/esm/index.d.ts",
  "packages/cluster/dist/cjs/index.js",
  "packages/cluster/dist/cjs/index.d.ts",
  "packages/cluster/dist/cjs/package.json",
  "packages/cluster/dist/esm/node/index.js",
  "packages/cluster/dist/esm/node/index.d.ts",
  "packages/cluster/dist/cjs/node/index.js",
  "packages/cluster-workflow/dist/esm/index.js",
  "packages/cluster-workflow/dist/esm/index.d.ts",
  "packages/cluster-workflow/dist/cjs/index.js",
  "packages/cluster-workflow/dist/cjs/index.d.ts",
  "packages/cluster-workflow/dist/cjs/package.json",
  "packages/cluster-workflow/dist/esm/node/Sqlite.js",
  "packages/cluster-workflow/dist/cjs/node/Sqlite.js"
]

// The public modules: every src/*.ts but the index (src/internal/ and src/node/ are not modules of the API).
const publicModules = (pkg: string) =>
  readdirSync(join(root, "packages", pkg, "src"))
    .filter((file) => file.endsWith(".ts") && file !== "index.ts")
    .map((file) => file.slice(0, -".ts".length))
const subpaths = [
  ...publicModules("cluster").map((module) => ({ pkg: "@effect-cluster/cluster", module })),
  ...publicModules("cluster-workflow").map((module) => ({ pkg: "@effect-cluster/cluster-workflow", module }))
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

const expectDist = (resolved: Record<string, string>, format: "esm" | "cjs") => {
  for (const [name, file] of Object.entries(resolved)) {
    expect(file, `${name} resolved outside dist/${format}/`).toMatch(new RegExp(`[\\\\/]dist[\\\\/]${format}[\\\\/].*\\.js$`))
  }
}

// Loads every public module by its subpath and by its root entry; prints, per subpath, the file it
// resolved to, whether the root entry has it as a namespace, and if so whether the exports are the same.
const subpathCheck = (format: "esm" | "cjs") => {
  const load = (specifier: string) =>
    format === "esm" ? `await import(${JSON.stringify(specifier)})` : `require(${JSON.stringify(specifier)})`
  const where = (specifier: string) =>
    format === "esm"
      ? `(await import("node:url")).fileURLToPath(import.meta.resolve(${JSON.stringify(specifier)}))`
      : `require.resolve(${JSON.stringify(specifier)})`
  const lines = subpaths.map(({ module, pkg }) => {
    const specifier = `${pkg}/${module}`
    return `{
  const sub = ${load(specifier)}
  const viaRoot = (${load(pkg)})[${JSON.stringify(module)}]
  const names = (mod) => Object.keys(mod).filter((key) => key !== "default" && key !== "__esModule").sort()
  out[${JSON.stringify(specifier)}] = {
    file: ${where(specifier)},
    count: names(sub).length,
    inRoot: viaRoot !== undefined,
    sameAsRoot: viaRoot !== undefined && JSON.stringify(names(sub)) === JSON.stringify(names(viaRoot))
  }
}`
  })
  return `${format === "esm" ? "" : "(async () => {\n"}const out = {}
${lines.join("\n")}
console.log(JSON.stringify(out))${format === "esm" ? "" : "\n})().catch((error) => { console.error(error); process.exit(1) })"}`
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
    expectDist(out.resolved, "esm")
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
    expectDist(out.resolved, "cjs")
    expect(out.cluster).toEqual(expectedExports.cluster)
    expect(out.workflow).toEqual(expectedExports.workflow)
    expect(out.sqlite).toEqual(expectedExports.sqlite)
  })

  for (const format of ["esm", "cjs"] as const) {
    it(`${format.toUpperCase()}: every public module resolves by subpath to dist/${format}/, with the root's exports`, () => {
      expect(subpaths.length).toBeGreaterThan(30)
      const run = runNode(format, subpathCheck(format))
      expectOk(run)
      const out: Record<string, { file: string; count: number; inRoot: boolean; sameAsRoot: boolean }> = JSON.parse(
        run.lastLine
      )
      expect(Object.keys(out).sort()).toEqual(subpaths.map(({ module, pkg }) => `${pkg}/${module}`).sort())
      expectDist(Object.fromEntries(Object.entries(out).map(([name, { file }]) => [name, file])), format)
      // Some modules are type-only (e.g. Broadcaster); most have values, and they really were loaded.
      expect(Object.values(out).filter(({ count }) => count > 0).length).toBeGreaterThan(25)
      // Most modules are namespaces of the root entry too; a few are subpath-only on purpose (e.g. a module
      // that loads @effect/sql at run time, which the root entry must not).
      expect(Object.values(out).filter(({ inRoot }) => inRoot).length).toBeGreaterThan(25)
      for (const [specifier, { inRoot, sameAsRoot }] of Object.entries(out)) {
        if (!inRoot) continue
        expect(sameAsRoot, `${specifier} exports differ from the root entry's namespace`).toBe(true)
      }
    })
  }

  it("internal modules are not exported", () => {
    const run = runNode("cjs", `
const codes = ["@effect-cluster/cluster/internal/hash", "@effect-cluster/cluster-workflow/internal/engine"].map((s) => {
  try { require(s); return "resolved" } catch (error) { return error.code }
})
console.log(JSON.stringify(codes))`)
    expectOk(run)
    expect(JSON.parse(run.lastLine)).toEqual(["ERR_PACKAGE_PATH_NOT_EXPORTED", "ERR_PACKAGE_PATH_NOT_EXPORTED"])
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

  it("the effect-cluster bin (package.json bin, linked in node_modules/.bin) runs the built command line", () => {
    const pkg = JSON.parse(readFileSync(join(root, "packages/cluster/package.json"), "utf8"))
    const bin = join(root, "packages/cluster", pkg.bin["effect-cluster"])
    expect(readFileSync(bin, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true)
    expect(readFileSync(join(root, "packages/cluster/dist/esm/node/bin.js"), "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true)
    const env: NodeJS.ProcessEnv = { ...process.env }
    delete env["NODE_OPTIONS"]
    for (const command of [join(root, "node_modules/.bin/effect-cluster"), bin]) {
      const result = spawnSync(command, ["--version"], { cwd: root, env, encoding: "utf8", timeout: 60_000 })
      expect(result.status, `${command}: ${result.stderr}`).toBe(0)
      expect(result.stdout.trim()).toBe(pkg.version)
    }
  })
})
