// Builds the package in the current directory into dist/, one output file per source module (no bundling):
//
//   dist/esm/  tsc: ESM `.js` + `.d.ts`, with source maps and declaration maps back to src/
//   dist/cjs/  esbuild (through tsup): CommonJS `.js` + maps, beside a copy of the same `.d.ts` files;
//              dist/cjs/package.json says `"type": "commonjs"`, so Node and TypeScript read both the code
//              and the declarations there as CommonJS.
//
// Why not a bundled build: a bundled `.d.ts` flattens `export * as X` namespaces into names like
// `Message$1` whose members no longer resolve, and with `skipLibCheck` every type silently becomes `any`.
// One declaration file per module is exactly what tsc checked. Every src/*.ts module is a subpath export
// (package.json `"./*"`), so a module added to src/ is published without touching this script.
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative } from "node:path"
import { build } from "tsup"

const cwd = process.cwd()
const require = createRequire(import.meta.url)
const dist = join(cwd, "dist")
const esm = join(dist, "esm")
const cjs = join(dist, "cjs")

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)]
  )

rmSync(dist, { recursive: true, force: true })

const tsc = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
  cwd,
  stdio: "inherit"
})
if (tsc.status !== 0) process.exit(tsc.status ?? 1)

await build({
  entry: walk(join(cwd, "src")).filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts")).map((file) => relative(cwd, file)),
  format: ["cjs"],
  bundle: false,
  outDir: "dist/cjs",
  outExtension: () => ({ js: ".js" }),
  sourcemap: true,
  target: "es2022",
  platform: "neutral",
  dts: false,
  clean: false,
  splitting: false,
  treeshake: false,
  silent: true,
  // src/ is published beside dist/: the maps point at it instead of carrying a second copy.
  esbuildOptions(options) {
    options.sourcesContent = false
  },
  tsconfig: "tsconfig.build.json"
})

writeFileSync(join(cjs, "package.json"), `${JSON.stringify({ type: "commonjs" }, null, 2)}\n`)
for (const file of walk(esm)) {
  if (!file.endsWith(".d.ts") && !file.endsWith(".d.ts.map")) continue
  const target = join(cjs, relative(esm, file))
  mkdirSync(dirname(target), { recursive: true })
  copyFileSync(file, target)
}
