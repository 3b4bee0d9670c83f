/**
 * The demo's entry (`pnpm start`): workflows on a cluster of processes, one of them killed half-way. What
 * it runs is examples/demo/demo.ts; this file prepares the programs of the demo's processes and hands over.
 *
 * Start-up time: under tsx each process would load some 700 modules (the packages' sources and effect's)
 * through tsx's loader hooks, which takes several seconds per process on a busy 2-core machine. So the
 * demo, its pods and its manager (the package's `effect-cluster` command, packages/cluster/src/node/bin.ts)
 * are first bundled with esbuild, one file per program, from the same sources, into the demo's temporary
 * directory; each process then loads one file. `DEMO_BUNDLE=0` runs everything from the sources under tsx
 * instead. Nothing is built into the repository.
 *
 * Cleanup: the temporary directory is removed when the demo ends, also on Ctrl-C (SIGINT) or SIGTERM, here
 * while bundling and in demo.ts afterwards (which also stops the processes).
 */
import { mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Programs, run as Run } from "./demo.js"

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")
const workflows = process.env.DEMO_WORKFLOWS ?? "1000"
if (!/^[1-9]\d{0,5}$/.test(workflows)) {
  console.error(`DEMO_WORKFLOWS must be a whole number from 1 to 999999 (got ${JSON.stringify(workflows)})`)
  process.exit(2)
}
const dir = mkdtempSync(join(tmpdir(), "effect-cluster-demo-"))
const removeDir = () => rmSync(dir, { recursive: true, force: true })
process.on("exit", removeDir)
const onSignal = () => {
  console.log("interrupted: files removed")
  process.exit(130)
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)

/** Bundles the four programs into `<dir>/bundle/*.mjs`. */
const bundle = async (): Promise<{ readonly demo: string; readonly programs: Programs }> => {
  const esbuild = await import("esbuild")
  const out = join(dir, "bundle")
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: {
      demo: "examples/demo/demo.ts",
      pod: "examples/demo/pod.ts",
      manager: "packages/cluster/src/node/bin.ts",
      guard: "examples/demo/guard.ts"
    },
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    conditions: ["source"],
    // The native SQLite driver and optional native codecs stay outside (found through the node_modules
    // link below), as does the PostgreSQL driver the manager loads only for a postgres:// URL.
    external: ["libsql", "msgpackr-extract", "bufferutil", "utf-8-validate", "@effect/sql-pg", "@effect/sql-pg/*", "pg"],
    // Bundled CommonJS modules require Node's built-ins.
    banner: { js: "import { createRequire as __demoRequire } from 'node:module'; const require = __demoRequire(import.meta.url);" },
    logLevel: "error"
  })
  await esbuild.stop()
  symlinkSync(join(root, "packages", "cluster-workflow", "node_modules"), join(dir, "node_modules"), "dir")
  const guard = ["--import", pathToFileURL(join(out, "guard.mjs")).href]
  return {
    demo: join(out, "demo.mjs"),
    programs: { pod: [...guard, join(out, "pod.mjs")], manager: [...guard, join(out, "manager.mjs")] }
  }
}

/** The programs run from the sources under tsx. */
const fromSources = (): { readonly demo: string; readonly programs: Programs } => {
  const tsx = ["--conditions=source", "--import", "tsx", "--import", pathToFileURL(join(root, "examples/demo/guard.ts")).href]
  return {
    demo: join(root, "examples/demo/demo.ts"),
    programs: {
      pod: [...tsx, join(root, "examples/demo/pod.ts")],
      manager: [...tsx, join(root, "packages/cluster/src/node/bin.ts")]
    }
  }
}

const { demo, programs } = process.env.DEMO_BUNDLE === "0" ? fromSources() : await bundle()
const { run } = (await import(pathToFileURL(demo).href)) as { run: typeof Run }
// From here on demo.ts handles the signals (it stops the processes, then removes the directory).
process.off("SIGINT", onSignal)
process.off("SIGTERM", onSignal)
// A Ctrl-C under `pnpm start` arrives twice (from the terminal, and relayed by the tools in between); the
// runtime stops listening after the first, and a second one with no listener would kill this process
// before its clean-up ends: the repeats are ignored (the first one is already stopping everything).
const ignoreRepeat = () => {}
process.on("SIGINT", ignoreRepeat)
process.on("SIGTERM", ignoreRepeat)
run({ dir, programs })
