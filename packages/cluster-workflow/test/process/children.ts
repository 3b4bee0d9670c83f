/**
 * The parent side of the real-process tests: spawns a child script, reads its protocol lines (see
 * child.ts), writes commands to its stdin, and SIGKILLs it.
 *
 * How children run: the TypeScript sources the children need (this package's src and test/process, and
 * packages/cluster/src) are transpiled into a temporary directory (packages/cluster/test/utils/
 * transpiledChildren.ts), and the child runs as plain `node <script>.js`: it boots in a third of the time
 * it takes under `node --conditions=source --import tsx`, and these tests start a child some twenty times
 * per database. `WF_CHILD_LOADER=tsx` runs the `.ts` files under tsx instead.
 *
 * This module does not depend on vitest (bench/restart.ts uses it too); harness.ts is the tests' entry.
 *
 * Nothing here sleeps: the parent waits for the child's next line, with a generous bound so that a bug
 * fails the test (with the child's output) instead of hanging it.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Effect, Schedule } from "effect"
import type * as Scope from "effect/Scope"
import { transpiledChildren } from "../../../cluster/test/utils/transpiledChildren.js"

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

const useTsx = process.env.WF_CHILD_LOADER === "tsx"

const children = transpiledChildren({
  tempPrefix: "wf-children-",
  sourceDirs: ["packages/cluster/src", "packages/cluster-workflow/src", "packages/cluster-workflow/test/process"],
  rewrites: [[/(from\s+)"@effect-cluster\/cluster"/g, "packages/cluster/src/index.js"]],
  packages: ["packages/cluster", "packages/cluster-workflow"]
})

/** Where the transpiled children are: transpiled once per test file (or bench run), see `removeChildren`. */
const childrenDir = (): string => children.dir()

/** Removes the transpiled children (harness.ts calls it after each test file). */
export const removeChildren = (): void => children.remove()

/** Transpiles the children now (call it before timing anything). */
export const prepareChildren: Effect.Effect<void> = Effect.sync(() => {
  if (!useTsx) childrenDir()
})

/** A protocol line of a child: `<kind> <token> <json>`. */
export interface Line {
  readonly kind: string
  readonly token: string
  readonly info: any
  /** When the parent read it (performance.now()). */
  readonly at: number
}

export class Child {
  readonly process: ChildProcess
  readonly spawnedAt = performance.now()
  /** The last lines of stdout and of stderr, for failure messages. */
  private readonly transcript: { readonly out: Array<string>; readonly err: Array<string> } = { out: [], err: [] }
  private readonly queue: Array<Line> = []
  /** Every warning and error the child logged (logfmt `level=WARN` / `level=ERROR` lines on stderr). */
  readonly warnings: Array<string> = []
  private waiter: ((line: Line | undefined) => void) | undefined
  private exitInfo: { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>

  constructor(readonly name: string, script: string, config: object) {
    const args = useTsx
      ? ["--conditions=source", "--import", "tsx", join(packageDir, "test", "process", script)]
      : ["--enable-source-maps", join(childrenDir(), "packages", "cluster-workflow", "test", "process", script.replace(/\.ts$/, ".js"))]
    this.process = spawn(
      process.execPath,
      args,
      {
        cwd: packageDir,
        env: { ...process.env, WF_CHILD: JSON.stringify(config) },
        stdio: ["pipe", "pipe", "pipe"]
      }
    )
    this.exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        this.exitInfo = { code, signal }
        resolve(this.exitInfo)
      })
    })
    // Lines still buffered in the pipe when the process exits are delivered before "close".
    this.process.on("close", () => this.deliver(undefined))
    createInterface({ input: this.process.stdout! }).on("line", (raw) => {
      this.record("out", raw)
      const match = /^(\S+) (\S+) (.*)$/.exec(raw)
      if (match === null) return
      let info: unknown
      try {
        info = JSON.parse(match[3]!)
      } catch {
        return
      }
      this.deliver({ kind: match[1]!, token: match[2]!, info, at: performance.now() })
    })
    createInterface({ input: this.process.stderr! }).on("line", (raw) => this.record("err", raw))
    // Writing to a child killed meanwhile must not crash the test process.
    this.process.stdin!.on("error", () => {})
  }

  get pid(): number {
    return this.process.pid ?? -1
  }

  private record(stream: "out" | "err", line: string) {
    if (stream === "err" && /level=(WARN|ERROR)/.test(line) && this.warnings.length < 10_000) this.warnings.push(line)
    const lines = this.transcript[stream]
    lines.push(line)
    if (lines.length > (stream === "out" ? 40 : 200)) lines.shift()
  }

  private closed = false
  private deliver(line: Line | undefined) {
    if (line === undefined) this.closed = true
    else this.queue.push(line)
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter(this.queue.shift())
    }
  }

  /** What the child printed lately, and how it exited. */
  describe(): string {
    return `${this.name} (pid ${this.pid}, exit ${JSON.stringify(this.exitInfo ?? "running")})\n` +
      `-- last stdout lines:\n  ${this.transcript.out.join("\n  ")}\n` +
      `-- last stderr lines:\n  ${this.transcript.err.join("\n  ")}`
  }

  /** The next protocol line; fails if the child ends first or prints nothing for `timeoutMillis`. */
  next(timeoutMillis = 30_000): Effect.Effect<Line> {
    return Effect.async<Line, Error>((resume) => {
      const queued = this.queue.shift()
      if (queued !== undefined) return resume(Effect.succeed(queued))
      if (this.closed) return resume(Effect.fail(new Error(`${this.describe()}\n-> ended before its next line`)))
      const timer = setTimeout(() => {
        this.waiter = undefined
        resume(Effect.fail(new Error(`${this.describe()}\n-> no line for ${timeoutMillis} ms`)))
      }, timeoutMillis)
      this.waiter = (line) => {
        clearTimeout(timer)
        resume(
          line === undefined
            ? Effect.fail(new Error(`${this.describe()}\n-> ended before its next line`))
            : Effect.succeed(line)
        )
      }
      return Effect.sync(() => {
        clearTimeout(timer)
        this.waiter = undefined
      })
    }).pipe(Effect.orDie)
  }

  /** The next line of one kind, failing on an `error` line or a line of another kind. */
  expect(kind: string, timeoutMillis?: number): Effect.Effect<Line> {
    return Effect.flatMap(this.next(timeoutMillis), (line) =>
      line.kind === kind
        ? Effect.succeed(line)
        : Effect.dieMessage(`${this.describe()}\n-> expected a "${kind}" line, got ${JSON.stringify(line)}`))
  }

  send(line: string): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.exitInfo === undefined) this.process.stdin!.write(`${line}\n`)
    })
  }

  /** SIGKILL, and wait until the process is gone. */
  kill: Effect.Effect<void> = Effect.promise(() => {
    if (this.exitInfo === undefined) this.process.kill("SIGKILL")
    return this.exited
  }).pipe(Effect.asVoid)

  /** SIGSTOP: the process stops where it is (no code runs, its sockets stay open) until `resume`. */
  pause: Effect.Effect<void> = Effect.sync(() => {
    if (this.exitInfo === undefined) this.process.kill("SIGSTOP")
  })

  /** SIGCONT: a paused process goes on from where it stopped. */
  resume: Effect.Effect<void> = Effect.sync(() => {
    if (this.exitInfo === undefined) this.process.kill("SIGCONT")
  })

  /** Waits for the child to exit on its own (bounded). */
  awaitExit(timeoutMillis = 30_000): Effect.Effect<{ readonly code: number | null; readonly signal: string | null }> {
    return Effect.promise(() => this.exited).pipe(
      Effect.timeoutFail({
        duration: timeoutMillis,
        onTimeout: () => new Error(`${this.describe()}\n-> did not exit within ${timeoutMillis} ms`)
      }),
      Effect.orDie
    )
  }
}

/** Spawns `test/process/<script>` with `config`; the child is killed when the scope closes. */
export const spawnChild = (name: string, script: string, config: object): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => new Child(name, script, config)), (child) => child.kill)

/** Repeats `condition` on the live clock every 100 ms until it holds; dies with `what` after `seconds`. */
export const until = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  seconds: number,
  what = "condition"
): Effect.Effect<void, never, R> =>
  condition.pipe(
    Effect.flatMap((holds) => holds ? Effect.void : Effect.fail("not yet" as const)),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeoutFail({ duration: `${seconds} seconds`, onTimeout: () => new Error(`${what} not reached in ${seconds} s`) }),
    Effect.orDie
  )
