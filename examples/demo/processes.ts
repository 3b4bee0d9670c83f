/**
 * The demo's child processes: `node` with the arguments main.ts prepared (a bundle, or the sources under
 * tsx, with `guard.ts` loaded first: a child whose demo is gone stops itself), each in a process group of
 * its own (so a Ctrl-C in the terminal reaches the demo only, which stops its children in order). Their
 * output is kept (the last lines, shown when something goes wrong), not printed, unless `DEMO_VERBOSE=1`.
 */
import { Deferred, Duration, Effect } from "effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"

const verbose = process.env.DEMO_VERBOSE === "1"

/** Every child started and not yet known to have exited (killed on the demo's exit, whatever happens). */
const running = new Set<ChildProcess>()
process.on("exit", () => {
  for (const child of running) {
    try {
      process.kill(-child.pid!, "SIGKILL")
    } catch {
      // already gone
    }
  }
})

/** A child process of the demo. */
export interface Child {
  readonly name: string
  readonly pid: number
  /** Calls `f` with each line the child prints (stdout and stderr), from now on. */
  readonly onLine: (f: (line: string) => void) => void
  /** Sends `signal`, and waits until the process has exited. */
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  readonly exited: boolean
  /** The last lines the child printed, and how it exited (for error messages). */
  readonly describe: () => string
}

/**
 * Starts `node <program> <args>` with `env` in the scope; resolves once it printed a line matching `ready`
 * (at most `timeout`). Closing the scope stops it: SIGTERM, then SIGKILL if it is still there after 5
 * seconds.
 */
export const startChild = (
  name: string,
  program: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  ready: RegExp,
  timeout: Duration.DurationInput = "120 seconds"
): Effect.Effect<Child, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawnChild(name, program, args, env)),
      (child) =>
        child.kill("SIGTERM").pipe(
          Effect.timeout("5 seconds"),
          Effect.catchAll(() => child.kill("SIGKILL"))
        )
    )
    const started = yield* Deferred.make<void>()
    child.onLine((line) => {
      if (ready.test(line)) Deferred.unsafeDone(started, Effect.void)
    })
    yield* Deferred.await(started).pipe(
      Effect.raceFirst(Effect.flatMap(
        Effect.promise(() => child.exitedPromise),
        () => Effect.fail(new Error(`${child.describe()}\n${name} exited before it was ready`))
      )),
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () => new Error(`${child.describe()}\n${name} was not ready in ${Duration.format(timeout)}`)
      })
    )
    return child
  })

const spawnChild = (name: string, program: ReadonlyArray<string>, args: ReadonlyArray<string>, env: Record<string, string>) => {
  const process_ = spawn(
    process.execPath,
    [...program, ...args],
    { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"], detached: true }
  )
  running.add(process_)
  const last: Array<string> = []
  const listeners: Array<(line: string) => void> = []
  let exitInfo: string | undefined
  const exitedPromise = new Promise<void>((resolve) => {
    process_.on("exit", (code, signal) => {
      exitInfo = signal === null ? `exit code ${code}` : `signal ${signal}`
      running.delete(process_)
      resolve()
    })
  })
  const onOutput = (line: string) => {
    last.push(line)
    if (last.length > 30) last.shift()
    if (verbose) console.log(`[${name}] ${line}`)
    for (const listener of listeners) listener(line)
  }
  createInterface({ input: process_.stdout! }).on("line", onOutput)
  createInterface({ input: process_.stderr! }).on("line", onOutput)
  // A child that exited early must not make the demo crash on a write to its stdin.
  process_.stdin!.on("error", () => {})
  const child: Child & { readonly exitedPromise: Promise<void> } = {
    name,
    pid: process_.pid!,
    exitedPromise,
    get exited() {
      return exitInfo !== undefined
    },
    onLine: (f) => {
      listeners.push(f)
    },
    kill: (signal) =>
      Effect.promise(() => {
        if (exitInfo === undefined) {
          try {
            // The whole group: the child and anything it started.
            process.kill(-process_.pid!, signal)
          } catch {
            // already gone
          }
        }
        return exitedPromise
      }),
    describe: () => `-- ${name} (pid ${process_.pid}, ${exitInfo ?? "running"}), last lines:\n  ${last.join("\n  ")}`
  }
  return child
}
