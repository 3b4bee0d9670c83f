/**
 * The root entries of both packages are browser-safe: their whole static import graph (our sources, the
 * workspace packages' sources, and the third-party files they reach, e.g. `effect`) imports no Node
 * built-in (`node:*`, `fs`, `net`, `path`, ...). Node-only code lives in subpath exports
 * (`@effect-cluster/cluster-workflow/sqlite`, under src/node/) and must not be reachable from the root.
 *
 * How: each root entry is bundled with esbuild for `platform: "browser"` with the "source" condition (so
 * workspace packages resolve to their src/). A plugin intercepts every import of a Node built-in that the
 * browser resolution cannot satisfy, records it and keeps the build going; the metafile then gives the
 * import chain from the entry to the offending file, which the failure message prints.
 *
 * esbuild is loaded from tsup's own dependency, the esbuild the packages' build uses (the lockfile pins it);
 * the root's own esbuild, a newer one, is the demo's bundler (examples/demo/main.ts).
 */
import { builtinModules, createRequire } from "node:module"
import { join, relative, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { describe, expect, it } from "vitest"

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")

// The part of esbuild's API this test uses.
interface ResolveResult {
  readonly path: string
  readonly external: boolean
  readonly namespace: string
  readonly sideEffects: boolean
  readonly errors: ReadonlyArray<unknown>
}
interface PluginBuild {
  onResolve(
    options: { filter: RegExp },
    callback: (args: {
      path: string
      importer: string
      kind: string
      resolveDir: string
      pluginData: unknown
    }) => Promise<unknown> | unknown
  ): void
  resolve(
    path: string,
    options: { kind: string; importer: string; resolveDir: string; pluginData: unknown }
  ): Promise<ResolveResult>
}
interface Metafile {
  readonly inputs: Record<string, { readonly imports: ReadonlyArray<{ readonly path: string; readonly external?: boolean }> }>
}
interface BuildFailure extends Error {
  readonly errors?: ReadonlyArray<{ readonly text: string; readonly location?: { readonly file: string; readonly line: number } | null }>
}
interface Esbuild {
  readonly version: string
  build(options: Record<string, unknown>): Promise<{ metafile: Metafile; errors: ReadonlyArray<unknown> }>
}

const loadEsbuild = async (): Promise<Esbuild> => {
  const fromRoot = createRequire(join(root, "package.json"))
  const fromTsup = createRequire(fromRoot.resolve("tsup"))
  const mod = await import(pathToFileURL(fromTsup.resolve("esbuild")).href)
  return (mod.default ?? mod) as Esbuild
}

const builtins = new Set(builtinModules.flatMap((name) => [name, name.split("/")[0]!]))
const isBuiltin = (specifier: string) => specifier.startsWith("node:") || builtins.has(specifier)

// Drivers and Node-only packages that must not be reachable from a root entry either.
const nodeOnlyPackages = [
  "@effect/sql-pg",
  "@effect/sql-libsql",
  "@effect/platform-node",
  "@libsql/client",
  "@libsql/",
  "libsql",
  "pg",
  "postgres"
]

interface Violation {
  readonly specifier: string
  readonly importer: string
}

const bundle = async (entry: string) => {
  const esbuild = await loadEsbuild()
  const violations: Array<Violation> = []
  const plugin = {
    name: "record-node-builtins",
    setup(build: PluginBuild) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (!isBuiltin(args.path) || args.pluginData === "inner") return undefined
        // Let the browser resolution try first: a package may map a built-in to a browser replacement
        // (its package.json "browser" field, or an installed polyfill package); that is browser-safe.
        const resolved = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: "inner"
        })
        if (resolved.errors.length === 0 && !resolved.external) return resolved
        violations.push({ specifier: args.path, importer: relative(root, args.importer) })
        return { path: args.path, external: true }
      })
    }
  }
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [join(root, entry)],
    bundle: true,
    write: false,
    platform: "browser",
    format: "esm",
    target: "es2022",
    conditions: ["source"],
    metafile: true,
    logLevel: "silent",
    plugins: [plugin]
  })
  return { metafile: result.metafile, violations }
}

// The import chain from the entry to `target`, over the metafile's import graph (paths relative to root).
const chainTo = (metafile: Metafile, entry: string, target: string): Array<string> => {
  const previous = new Map<string, string | null>([[entry, null]])
  const queue = [entry]
  while (queue.length > 0) {
    const current = queue.shift()!
    if (current === target) break
    for (const next of metafile.inputs[current]?.imports ?? []) {
      if (next.external || previous.has(next.path)) continue
      previous.set(next.path, current)
      queue.push(next.path)
    }
  }
  if (!previous.has(target)) return [target]
  const chain: Array<string> = []
  for (let at: string | null | undefined = target; at != null; at = previous.get(at)) chain.unshift(at)
  return chain
}

const describeFailure = (error: unknown): string => {
  const failure = error as BuildFailure
  const details = (failure.errors ?? []).map((e) =>
    `  ${e.location ? `${e.location.file}:${e.location.line}: ` : ""}${e.text}`
  )
  return [`esbuild failed to bundle for the browser: ${failure.message}`, ...details].join("\n")
}

const entries = [
  { name: "@effect-cluster/cluster", entry: "packages/cluster/src/index.ts" },
  { name: "@effect-cluster/cluster-workflow", entry: "packages/cluster-workflow/src/index.ts" }
]

describe("root entries are browser-safe", () => {
  it("the built-in detector knows Node's built-ins", () => {
    for (const name of ["fs", "node:fs", "fs/promises", "net", "path", "child_process", "os", "crypto", "http", "worker_threads", "node:sqlite"]) {
      expect(isBuiltin(name), name).toBe(true)
    }
    for (const name of ["effect", "effect/Schema", "@effect/sql", "./fs.js"]) expect(isBuiltin(name), name).toBe(false)
  })

  it("a module importing a Node built-in is caught, with its import chain", async () => {
    // Node-only code exists (the SQLite subpath): bundling it must be flagged, or the check proves nothing.
    const entry = "packages/cluster-workflow/src/node/Sqlite.ts"
    const { metafile, violations } = await bundle(entry)
    expect(violations.map((v) => v.specifier)).toContain("node:path")
    const violation = violations.find((v) => v.specifier === "node:path")!
    expect(chainTo(metafile, entry, violation.importer)[0]).toBe(entry)
  })

  for (const { entry, name } of entries) {
    it(`${name} (${entry}) imports no Node built-in and no Node-only driver`, async () => {
      let built: Awaited<ReturnType<typeof bundle>>
      try {
        built = await bundle(entry)
      } catch (error) {
        expect.fail(describeFailure(error))
      }
      const { metafile, violations } = built
      const report = violations.map((v) =>
        `${v.specifier} imported via ${[...chainTo(metafile, entry, v.importer), v.specifier].join(" -> ")}`
      )
      expect(report, `Node built-ins reachable from ${entry}`).toEqual([])

      const inputs = Object.keys(metafile.inputs)
      const drivers = inputs.filter((file) =>
        nodeOnlyPackages.some((pkg) => file.includes(`node_modules/${pkg}`)) || file.includes("/src/node/")
      )
      expect(
        drivers.map((file) => chainTo(metafile, entry, file).join(" -> ")),
        `Node-only modules reachable from ${entry}`
      ).toEqual([])

      // `@effect/sql` is a peer for its types only: the SQL journal reaches `SqlClient` through a tag of the
      // same key, so an in-memory journal user's program never loads it.
      expect(
        inputs.filter((file) => file.includes("node_modules/@effect/sql/")).map((file) => chainTo(metafile, entry, file).join(" -> ")),
        `@effect/sql loaded at run time by ${entry}`
      ).toEqual([])

      // The graph really was walked: our sources and effect's files are in it.
      expect(inputs.some((file) => file.startsWith("node_modules/") && file.includes("/effect/"))).toBe(true)
      expect(inputs.length).toBeGreaterThan(10)
    })
  }
})
