/**
 * What npm users get: both packages are packed (`pnpm pack`, which rewrites `workspace:^` ranges), then
 * installed with npm from their tarballs into a fresh app in a temporary directory OUTSIDE the workspace,
 * next to `effect@3.22.4` and nothing else the library needs (the in-memory journal user's install).
 *
 * In that app:
 * - the install itself: no peer-dependency warnings, `npm ls` clean, no SQL driver pulled in, and
 *   `npm ls --all` lists nothing unmet for these packages (they declare no driver or transport peer);
 * - the type-check of examples/consumer/types.ts (type assertions whose `@ts-expect-error` lines fail to
 *   compile if a declaration degrades to `any`), examples/consumer/compat2024.ts (2024 subpath imports) and
 *   the seed program (examples/process-payment.ts, also as a `.cts` CommonJS module) with
 *   `skipLibCheck: false`, under `moduleResolution` `node16`, `bundler` and `node10` (typesVersions): zero
 *   errors, in the app or in the packages' declarations;
 * - the seed program runs as ESM and as CommonJS, and the 2024 subpath program runs, on the installed code;
 * - last, the README's driver lines (`npm i @effect/sql-libsql@0.42`, `npm i @effect/sql-pg@0.53`) install
 *   without peer warnings (`npm ls --all` clean again for a user of the SQLite driver alone), and examples/consumer/sql.ts runs a workflow on a SQLite file through the
 *   `/sqlite` subpath (ESM and CommonJS) and on PostgreSQL through `DurableExecutionJournal.layer({ table })`
 *   (`DATABASE_URL`; skipped if unreachable, unless `REQUIRE_POSTGRES` is set).
 *
 * `pnpm test` builds the packages before vitest runs. One npm install serves every check; with a warm npm
 * cache (`--prefer-offline`) it takes a few seconds.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs"
import { createRequire } from "node:module"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")
const tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc")
const packages = ["cluster", "cluster-workflow"] as const

// The environment of a command run in the app: none of the workspace's pnpm/npm settings leak into it.
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|PNPM_|NODE_OPTIONS$|VITEST|TS_NODE)/i.test(key)) continue
    env[key] = value
  }
  return env
}

interface RunResult {
  readonly status: number | null
  readonly signal: NodeJS.Signals | null
  readonly error: Error | undefined
  readonly stdout: string
  readonly output: string
}

// Asynchronous, so the test worker keeps answering vitest while a long tsc or npm runs.
const run = (command: string, args: ReadonlyArray<string>, cwd: string, timeout = 240_000) =>
  new Promise<RunResult>((resolveRun) => {
    const child = spawn(command, args, { cwd, env: cleanEnv(), timeout, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let output = ""
    let error: Error | undefined
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
      output += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    child.on("error", (cause) => {
      error = cause
    })
    child.on("close", (status, signal) => resolveRun({ status, signal, error, stdout, output }))
  })

const expectOk = (result: RunResult, what: string) => {
  expect(result.error, `${what}: ${String(result.error)}`).toBeUndefined()
  expect(result.status, `${what} exited with ${result.status} (${result.signal ?? "no signal"})\n${result.output}`).toBe(0)
}

// Three ways a TypeScript user resolves the packages. node16 also checks the `.cts` copy of the seed
// program, which resolves through the `require` condition (dist/cjs, read as CommonJS). node10 (no
// `exports`: subpaths through `typesVersions`) runs with the usual `skipLibCheck: true`, under which the old
// bundled declarations silently turned into `any`: the `@ts-expect-error` lines catch that, and skipping
// the check of every library declaration (effect's too) keeps it fast; the other two check them all.
const tsconfigs = {
  node16: { module: "node16", moduleResolution: "node16", skipLibCheck: false, include: ["src"] },
  bundler: { module: "preserve", moduleResolution: "bundler", skipLibCheck: false, include: ["src/*.ts"] },
  node10: { module: "commonjs", moduleResolution: "node10", skipLibCheck: true, include: ["src/*.ts"] }
} as const

// npm's warnings about peers (ERESOLVE and the like); other warnings (e.g. npm 11 listing packages with
// install scripts, here msgpackr-extract under @effect/platform) are not about these packages' manifests.
const peerWarnings = (output: string) =>
  output.split("\n").filter((line) => /^npm warn/i.test(line) && /peer|ERESOLVE|conflict/i.test(line))

// `npm ls --all` of the app: exit 0, no invalid, missing or extraneous package and no unmet required
// dependency anywhere, and no unmet dependency (optional or not) of these packages. The packages declare
// no peer for a driver or transport the user may not use, so none is listed. What npm still lists as
// `UNMET OPTIONAL DEPENDENCY` belongs to other packages (optional peers of @effect/experimental and ws,
// native binaries of other platforms under msgpackr-extract and libsql); it is returned, to be printed.
const expectCleanTree = async (cwd: string, what: string): Promise<ReadonlyArray<string>> => {
  const text = await run("npm", ["ls", "--all"], cwd)
  expectOk(text, `npm ls --all (${what})`)
  expect(text.output).not.toMatch(/invalid|missing|extraneous|UNMET DEPENDENCY|ERR!/i)
  const json = await run("npm", ["ls", "--all", "--json"], cwd)
  expectOk(json, `npm ls --all --json (${what})`)
  interface Node {
    readonly version?: string
    readonly invalid?: unknown
    readonly dependencies?: Record<string, Node>
  }
  const unmet: Array<string> = []
  const walk = (name: string, node: Node) => {
    for (const [child, entry] of Object.entries(node.dependencies ?? {})) {
      if (entry.version === undefined || entry.invalid !== undefined) {
        expect(name, `${what}: ${child} is unmet or invalid under ${name}`).not.toMatch(/^@effect-cluster\//)
        unmet.push(`${child} (under ${name})`)
      }
      walk(child, entry)
    }
  }
  walk("(app)", JSON.parse(json.stdout) as Node)
  for (const line of unmet) {
    expect(line, what).not.toMatch(/^(@effect\/(sql-libsql|sql-pg|platform-node|rpc|cli|printer|printer-ansi)|@libsql\/client|libsql|pg) /)
  }
  return unmet
}

// Whether a TCP connection to the PostgreSQL server of `url` opens within a few seconds.
const reachable = (url: string) =>
  new Promise<boolean>((resolveReachable) => {
    const { hostname, port } = new URL(url)
    const socket = connect({ host: hostname, port: Number(port || 5432), timeout: 3_000 })
    const done = (ok: boolean) => {
      socket.destroy()
      resolveReachable(ok)
    }
    socket.once("connect", () => done(true)).once("timeout", () => done(false)).once("error", () => done(false))
  })

let app = ""
let installSeconds = 0
let installOutput = ""

describe("the packed packages, installed with npm into a fresh app", () => {
  beforeAll(async () => {
    for (const pkg of packages) {
      const built = join(root, "packages", pkg, "dist", "esm", "index.d.ts")
      if (!existsSync(built)) throw new Error(`${built} is missing: run \`pnpm build\` (the test command does) first`)
    }
    app = mkdtempSync(join(tmpdir(), "effect-cluster-consumer-"))
    const tarballs: Record<string, string> = {}
    for (const pkg of packages) {
      const packed = await run("pnpm", ["pack", "--pack-destination", app], join(root, "packages", pkg))
      expectOk(packed, `pnpm pack (${pkg})`)
      const tarball = readdirSync(app).find((file) => file.startsWith(`effect-cluster-${pkg}-`) && file.endsWith(".tgz"))
      if (tarball === undefined) throw new Error(`pnpm pack wrote no tarball for ${pkg}:\n${packed.output}`)
      tarballs[`@effect-cluster/${pkg}`] = `file:./${tarball}`
    }
    const typesNode = JSON.parse(readFileSync(join(root, "node_modules/@types/node/package.json"), "utf8")).version
    writeFileSync(join(app, "package.json"), JSON.stringify({
      name: "effect-cluster-consumer",
      private: true,
      type: "module",
      dependencies: { ...tarballs, effect: "3.22.4" },
      devDependencies: { "@types/node": typesNode }
    }, null, 2))
    mkdirSync(join(app, "src"))
    const seed = readFileSync(join(root, "examples/process-payment.ts"), "utf8")
    writeFileSync(join(app, "src/seed.ts"), seed)
    writeFileSync(join(app, "src/seed.cts"), seed)
    for (const file of ["types.ts", "compat2024.ts"]) {
      writeFileSync(join(app, "src", file), readFileSync(join(root, "examples/consumer", file), "utf8"))
    }
    for (const [name, { include, ...options }] of Object.entries(tsconfigs)) {
      writeFileSync(join(app, `tsconfig.${name}.json`), JSON.stringify({
        compilerOptions: { ...options, target: "es2022", strict: true, noEmit: true, types: ["node"] },
        include
      }, null, 2))
    }
    const started = performance.now()
    const install = await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], app)
    installSeconds = (performance.now() - started) / 1000
    installOutput = install.output
    expectOk(install, "npm install")
    console.log(`npm install of the packed packages: ${installSeconds.toFixed(1)} s`)
  }, 300_000)

  afterAll(() => {
    if (app !== "") rmSync(app, { recursive: true, force: true })
  })

  it("installs with effect 3 and no SQL driver, without peer-dependency warnings", async () => {
    expect(peerWarnings(installOutput), installOutput).toEqual([])
    const ls = await run("npm", ["ls"], app)
    expectOk(ls, "npm ls")
    expect(ls.output).not.toMatch(/UNMET|invalid|missing|extraneous/i)
    const others = await expectCleanTree(app, "in-memory user")
    console.log(`npm ls --all (in-memory user): other packages' unmet optional dependencies: ${others.join(", ")}`)
    const installed = (name: string) => existsSync(join(app, "node_modules", name, "package.json"))
    expect(JSON.parse(readFileSync(join(app, "node_modules/effect/package.json"), "utf8")).version).toBe("3.22.4")
    for (const driver of ["@effect/sql-pg", "@effect/sql-libsql", "@libsql/client", "libsql", "pg", "postgres"]) {
      expect(installed(driver), `${driver} was installed`).toBe(false)
    }
    for (const pkg of packages) {
      const dir = join(app, "node_modules/@effect-cluster", pkg)
      // The packed manifests name real versions, not the workspace protocol.
      expect(readFileSync(join(dir, "package.json"), "utf8")).not.toContain("workspace:")
      expect(readFileSync(join(dir, "LICENSE"), "utf8")).toContain("MIT License")
      expect(readFileSync(join(dir, "README.md"), "utf8")).toContain(`# @effect-cluster/${pkg}`)
    }
  })

  it("refuses effect 4 at install time", async () => {
    const dir = join(app, "with-effect-4")
    mkdirSync(dir)
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "with-effect-4", private: true }))
    const tarballs = readdirSync(app).filter((file) => file.endsWith(".tgz")).map((file) => join("..", file))
    const install = await run("npm", ["install", "--dry-run", "--prefer-offline", "--no-audit", "--no-fund", ...tarballs, "effect@4"], dir)
    expect(install.status, install.output).not.toBe(0)
    expect(install.output).toContain("ERESOLVE")
    // npm names the first Effect 3 peer it meets on the way from the packages: their own, or that of
    // @effect/sql (their peer), as the README quotes.
    expect(install.output).toMatch(/peer effect@"\^3\.22\.\d+" from (@effect-cluster\/cluster|@effect\/sql)/)
    expect(install.output).toMatch(/from @effect-cluster\/cluster/)
  })

  it("the effect-cluster command names the packages to install when they are missing (not peers)", async () => {
    const result = await run(join(app, "node_modules/.bin/effect-cluster"), ["--help"], app, 60_000)
    expect(result.status, result.output).toBe(1)
    expect(result.output).toContain("effect-cluster needs the package @effect/platform-node, which is not installed")
    expect(result.output).toContain("npm i @effect/platform-node@0.108 @effect/rpc@0.76 @effect/cli@0.77")
  })

  for (const name of Object.keys(tsconfigs) as Array<keyof typeof tsconfigs>) {
    it(`type-checks under moduleResolution ${name} (skipLibCheck: ${tsconfigs[name].skipLibCheck})`, async () => {
      // One tsc run: the check, and the files of the program it checked.
      const result = await run(process.execPath, [tsc, "-p", `tsconfig.${name}.json`, "--listFiles"], app)
      expectOk(result, `tsc (${name})`)
      // The packages' declarations really are part of the program, from dist/ (not src/).
      const files = result.stdout.split("\n")
      for (const pkg of packages) {
        expect(files.some((file) => file.includes(`node_modules/@effect-cluster/${pkg}/dist/`) && file.endsWith(".d.ts"))).toBe(true)
        expect(files.some((file) => file.includes(`node_modules/@effect-cluster/${pkg}/src/`))).toBe(false)
      }
      // Subpath imports resolved to the declarations of their format.
      const format = name === "node10" ? "cjs" : "esm"
      for (const file of [`cluster/dist/${format}/ShardId.d.ts`, `cluster-workflow/dist/${format}/WorkflowEngine.d.ts`]) {
        expect(files.some((listed) => listed.endsWith(`node_modules/@effect-cluster/${file}`)), file).toBe(true)
      }
      if (name === "node16") {
        // seed.cts requires the root entries: their CommonJS declarations.
        expect(files.some((listed) => listed.endsWith("node_modules/@effect-cluster/cluster-workflow/dist/cjs/index.d.ts"))).toBe(true)
      }
    }, 300_000)
  }

  // The checked sources, compiled without a second type-check (the tests above did it) and run with node.
  const transpile = async (source: string, target: string, module: ts.ModuleKind, args: ReadonlyArray<string> = []) => {
    const code = readFileSync(join(app, source.includes("/") ? "" : "src", source), "utf8")
    const output = ts.transpileModule(code, {
      compilerOptions: { module, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
      fileName: source
    })
    mkdirSync(join(app, "out"), { recursive: true })
    writeFileSync(join(app, "out", target), output.outputText)
    return run(process.execPath, [join("out", target), ...args], app, 60_000)
  }

  const seedOutput = [
    "getTotalAmountActivity(order-1)",
    "chargeCreditCardActivity(my-card, 100)",
    "createShippingTrackingCodeActivity(My address)",
    "tracking code: 1"
  ]

  it("runs the seed program as ESM", async () => {
    const result = await transpile("seed.ts", "seed.js", ts.ModuleKind.ESNext)
    expectOk(result, "node out/seed.js")
    for (const line of seedOutput) expect(result.output).toContain(line)
  })

  it("runs the seed program as CommonJS", async () => {
    const result = await transpile("seed.cts", "seed.cjs", ts.ModuleKind.CommonJS)
    expectOk(result, "node out/seed.cjs")
    for (const line of seedOutput) expect(result.output).toContain(line)
  })

  it("runs a 2024 program that imports one module per subpath", async () => {
    const result = await transpile("compat2024.ts", "compat2024.js", ts.ModuleKind.ESNext)
    expectOk(result, "node out/compat2024.js")
    expect(result.stdout.trim().split("\n").sort()).toEqual([
      "2024 tags: EntityTypeNotRegisteredException, @effect/cluster-workflow/CrashableRuntimeCrashedError",
      "encoded: " + JSON.stringify([
        { value: 7, "@effect/cluster/ShardId": "@effect/cluster/ShardId" },
        { _tag: "@effect/cluster/MessageState/Acknowledged", "@effect/cluster/MessageState": "@effect/cluster/MessageState" }
      ]) + " true",
      "greeting: hello WORLD"
    ])
  })
  // Last: installing a driver changes the app the checks above ran on (an in-memory journal user's).
  describe("SQL users, after the README's driver lines", () => {
    const databaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"
    const requirePostgres = (process.env["REQUIRE_POSTGRES"] ?? "") !== ""

    let sqliteTree: ReadonlyArray<string> | undefined

    beforeAll(async () => {
      for (const driver of ["@effect/sql-libsql@0.42", "@effect/sql-pg@0.53"]) {
        const install = await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", driver], app)
        expectOk(install, `npm install ${driver}`)
        expect(peerWarnings(install.output), install.output).toEqual([])
        // A SQLite user installs only the SQLite driver: the tree is clean then too.
        if (driver.startsWith("@effect/sql-libsql")) sqliteTree = await expectCleanTree(app, "SQLite user")
      }
      const ls = await run("npm", ["ls"], app)
      expectOk(ls, "npm ls")
      mkdirSync(join(app, "sql"))
      writeFileSync(join(app, "sql/sql.ts"), readFileSync(join(root, "examples/consumer/sql.ts"), "utf8"))
    }, 300_000)

    it("a SQLite user's npm ls --all lists no unmet dependency of the packages", () => {
      // Checked in beforeAll, between the two driver installs; here only its record.
      expect(sqliteTree, "beforeAll checked the SQLite user's tree").toBeDefined()
      console.log(`npm ls --all (SQLite user): other packages' unmet optional dependencies: ${sqliteTree?.join(", ")}`)
      expect(sqliteTree?.every((line) => !line.includes("(under @effect-cluster/"))).toBe(true)
    })

    it("the /sqlite subpath runs a workflow on a SQLite file, as ESM and as CommonJS", async () => {
      const esm = await transpile("sql/sql.ts", "sql.js", ts.ModuleKind.ESNext, ["sqlite", join(app, "esm.db")])
      expectOk(esm, "node out/sql.js sqlite")
      expect(esm.stdout.trim()).toBe("result: 20")
      const cjs = await transpile("sql/sql.ts", "sql.cjs", ts.ModuleKind.CommonJS, ["sqlite", join(app, "cjs.db")])
      expectOk(cjs, "node out/sql.cjs sqlite")
      expect(cjs.stdout.trim()).toBe("result: 20")
    })

    it("DurableExecutionJournal.layer({ table }) runs a workflow on PostgreSQL", async (context) => {
      if (!(await reachable(databaseUrl))) {
        if (requirePostgres) expect.fail(`REQUIRE_POSTGRES is set but PostgreSQL at ${databaseUrl} is unreachable`)
        console.warn(`skipping: PostgreSQL at ${databaseUrl} is unreachable; set REQUIRE_POSTGRES=1 to fail instead`)
        context.skip()
      }
      const result = await transpile("sql/sql.ts", "sql.js", ts.ModuleKind.ESNext, ["postgres", databaseUrl])
      expectOk(result, "node out/sql.js postgres")
      expect(result.stdout.trim()).toBe("result: 20")
    })
  })
})
