/**
 * The parent side of the cluster's multi-process tests: runs the `effect-cluster` bin (a manager) and
 * pod children as real Node processes, reads their output lines, writes commands to their stdin and sends
 * them signals (SIGKILL, SIGSTOP/SIGCONT, SIGTERM).
 *
 * Children run as plain `node <file>.js` from this package's src/ and test/ transpiled (see
 * test/utils/transpiledChildren.ts); `CLUSTER_CHILD_LOADER=tsx` runs the `.ts` files under tsx instead.
 *
 * Nothing here sleeps: the parent waits for a child's next matching line or its exit, each with a bound,
 * so a bug fails the test with the child's output instead of hanging it.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"
import { transpiledChildren } from "../utils/transpiledChildren.js"

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const useTsx = process.env.CLUSTER_CHILD_LOADER === "tsx"

const children = transpiledChildren({
  tempPrefix: "cluster-children-",
  sourceDirs: ["packages/cluster/src", "packages/cluster/test"],
  // The package's own imports, as the children's transpiled files must spell them.
  rewrites: [
    [/(from\s+)"@effect-cluster\/cluster\/FencedWrite"/g, "packages/cluster/src/node/FencedWrite.js"],
    [/(from\s+)"@effect-cluster\/cluster\/node"/g, "packages/cluster/src/node/index.js"],
    [/(from\s+)"@effect-cluster\/cluster\/StorageSql"/g, "packages/cluster/src/node/StorageSql.js"],
    [/(from\s+)"@effect-cluster\/cluster"/g, "packages/cluster/src/index.js"]
  ],
  packages: ["packages/cluster"]
})

/** Removes the transpiled children (call it in `afterAll`). */
export const cleanUpChildren = (): void => children.remove()

/** The command that runs a file of this package (`src/...` or `test/...`, given as its `.ts` path). */
export const nodeArgs = (file: string): Array<string> =>
  useTsx
    ? ["--conditions=source", "--import", "tsx", join(packageDir, file)]
    : ["--enable-source-maps", join(children.dir(), "packages", "cluster", file.replace(/\.ts$/, ".js"))]

interface ExitInfo {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** A child process: its output lines, kept for matching and for failure messages. */
export class Child {
  readonly process: ChildProcess
  private readonly lines: Array<string> = []
  private readonly errLines: Array<string> = []
  private cursor = 0
  private waiters = new Set<() => void>()
  private exitInfo: ExitInfo | undefined
  readonly exited: Promise<ExitInfo>

  constructor(readonly name: string, file: string, args: ReadonlyArray<string>, env: Record<string, string>) {
    this.process = spawn(process.execPath, [...nodeArgs(file), ...args], {
      cwd: packageDir,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    this.exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        this.exitInfo = { code, signal }
        resolve(this.exitInfo)
        this.wake()
      })
    })
    createInterface({ input: this.process.stdout! }).on("line", (line) => {
      this.lines.push(line)
      this.wake()
    })
    createInterface({ input: this.process.stderr! }).on("line", (line) => {
      this.errLines.push(line)
      if (this.errLines.length > 200) this.errLines.shift()
    })
    this.process.stdin!.on("error", () => {})
  }

  private wake() {
    for (const waiter of this.waiters) waiter()
  }

  get pid(): number {
    return this.process.pid ?? -1
  }

  get running(): boolean {
    return this.exitInfo === undefined
  }

  /** Everything the child printed on stdout so far. */
  get output(): string {
    return this.lines.join("\n")
  }

  /** What the child printed lately, and how it exited. */
  describe(): string {
    return `${this.name} (pid ${this.pid}, exit ${JSON.stringify(this.exitInfo ?? "running")})\n` +
      `-- stdout:\n  ${this.lines.slice(-40).join("\n  ")}\n-- stderr:\n  ${this.errLines.slice(-60).join("\n  ")}`
  }

  /**
   * The first line after the previous match that matches `pattern` (its match); fails if the child exits
   * first or prints none within `timeoutMillis`.
   */
  waitFor(pattern: RegExp, timeoutMillis = 60_000): Effect.Effect<RegExpExecArray> {
    return Effect.async<RegExpExecArray, Error>((resume) => {
      const check = () => {
        while (this.cursor < this.lines.length) {
          const match = pattern.exec(this.lines[this.cursor++]!)
          if (match !== null) return done(Effect.succeed(match))
        }
        if (this.exitInfo !== undefined) done(Effect.fail(new Error(`${this.describe()}\n-> exited before ${pattern}`)))
      }
      const timer = setTimeout(
        () => done(Effect.fail(new Error(`${this.describe()}\n-> no line matching ${pattern} in ${timeoutMillis} ms`))),
        timeoutMillis
      )
      const done = (result: Effect.Effect<RegExpExecArray, Error>) => {
        clearTimeout(timer)
        this.waiters.delete(check)
        resume(result)
      }
      this.waiters.add(check)
      check()
      return Effect.sync(() => {
        clearTimeout(timer)
        this.waiters.delete(check)
      })
    }).pipe(Effect.orDie)
  }

  /** Writes a command line to the child's stdin (the gate it waits at). */
  send(line: string): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.exitInfo === undefined) this.process.stdin!.write(`${line}\n`)
    })
  }

  /** Sends a signal (nothing when the child has exited). */
  signal(signal: NodeJS.Signals): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.exitInfo === undefined) this.process.kill(signal)
    })
  }

  /** Waits for the child to exit (bounded). */
  awaitExit(timeoutMillis = 30_000): Effect.Effect<ExitInfo> {
    return Effect.promise(() => this.exited).pipe(
      Effect.timeoutFail({
        duration: timeoutMillis,
        onTimeout: () => new Error(`${this.describe()}\n-> did not exit within ${timeoutMillis} ms`)
      }),
      Effect.orDie
    )
  }

  /** SIGKILL (after SIGCONT, in case it is stopped), and wait until the process is gone. */
  readonly kill: Effect.Effect<void> = Effect.suspend(() => {
    if (this.exitInfo === undefined) {
      this.process.kill("SIGKILL")
    }
    return Effect.asVoid(Effect.promise(() => this.exited))
  })
}

/** Spawns a child running `file` of this package; it is SIGKILLed when the scope closes. */
export const spawnChild = (
  name: string,
  file: string,
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => new Child(name, file, args, env)), (child) => child.kill)
