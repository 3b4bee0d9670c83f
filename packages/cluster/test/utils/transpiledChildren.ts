/**
 * How the real-process tests of both packages run their children (packages/cluster/test/process/harness.ts,
 * packages/cluster-workflow/test/process/children.ts): the TypeScript sources a child needs are transpiled
 * file by file with TypeScript's `transpileModule` into a temporary directory (the repository's layout,
 * `node_modules` linked to the repository's), and the child runs as plain `node <file>.js`. The code is
 * the same, but a child boots several times faster than under `node --import tsx`, whose loader hooks see
 * every module, effect's included.
 *
 * This module does not depend on vitest (bench/restart.ts uses it too, through children.ts).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"

/** The repository's root. */
export const repoDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..")

/** The TypeScript sources below `dir` (no declarations, no test files). */
const tsFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? tsFiles(join(dir, entry.name))
      : entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") && !entry.name.endsWith(".test.ts")
      ? [join(dir, entry.name)]
      : []
  )

/** What the children of one test file (or bench run) need, transpiled once. */
export interface TranspiledChildren {
  /** The directory of the transpiled tree (transpiled at the first call). */
  readonly dir: () => string
  /** Removes the transpiled tree (after the test file); the next `dir()` transpiles again. */
  readonly remove: () => void
}

/**
 * The transpiled tree of `sourceDirs` (repository-relative), whose imports of the workspace's packages
 * (`rewrites`: a pattern `(from\s+)"<package>"` and the repository-relative `.js` file it stands for, in
 * order) point into the tree, and whose `packages` (repository-relative) have their `node_modules` linked.
 */
export const transpiledChildren = (options: {
  readonly tempPrefix: string
  readonly sourceDirs: ReadonlyArray<string>
  readonly rewrites: ReadonlyArray<readonly [RegExp, string]>
  readonly packages: ReadonlyArray<string>
}): TranspiledChildren => {
  const transpile = (): string => {
    const out = mkdtempSync(join(tmpdir(), options.tempPrefix))
    for (const source of options.sourceDirs.flatMap((dir) => tsFiles(join(repoDir, dir)))) {
      const target = join(out, relative(repoDir, source)).replace(/\.ts$/, ".js")
      let { outputText } = ts.transpileModule(readFileSync(source, "utf8"), {
        fileName: source,
        compilerOptions: {
          module: ts.ModuleKind.ESNext,
          target: ts.ScriptTarget.ES2022,
          verbatimModuleSyntax: true,
          inlineSourceMap: true,
          inlineSources: true
        }
      })
      for (const [pattern, file] of options.rewrites) {
        outputText = outputText.replace(pattern, `$1"./${relative(dirname(target), join(out, file))}"`)
      }
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, outputText)
    }
    writeFileSync(join(out, "package.json"), JSON.stringify({ type: "module", private: true }))
    symlinkSync(join(repoDir, "node_modules"), join(out, "node_modules"), "dir")
    for (const pkg of options.packages) {
      symlinkSync(join(repoDir, pkg, "node_modules"), join(out, pkg, "node_modules"), "dir")
    }
    return out
  }
  let compiled: string | undefined
  return {
    dir: () => {
      if (compiled === undefined) compiled = transpile()
      return compiled
    },
    remove: () => {
      if (compiled !== undefined) rmSync(compiled, { recursive: true, force: true })
      compiled = undefined
    }
  }
}
