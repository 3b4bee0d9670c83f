/**
 * The child side of the real-process tests: configuration (the `WF_CHILD` environment variable, JSON), the
 * journal layer, and the line protocol with the parent.
 *
 * stdout (one line each): `<kind> <token> <json>`, e.g. `gate c1:ledger:after {"attempt":0,...}`,
 * `result c1 {...}`, `ready - {}`. Effect's logs go to stderr, so stdout carries the protocol only.
 *
 * stdin: `go <token>` lets one gate pass; `open` lets every gate pass from now on; any other line is a
 * command (`start`) that `awaitCommand` waits for. The child exits when stdin closes (its parent is gone).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Cause, Effect, Exit, Layer, Logger, Redacted } from "effect"
import { createInterface } from "node:readline"
import type { DurableExecutionJournal } from "../../src/DurableExecutionJournal.js"
import * as DurableExecutionJournalSql from "../../src/DurableExecutionJournalSql.js"
import * as Sqlite from "../../src/node/Sqlite.js"

export interface ChildConfig {
  readonly dialect: "sqlite" | "postgres"
  /** SQLite: the database file; PostgreSQL: the connection URL. */
  readonly location: string
  readonly prefix: string
  /** The engine identity (the same across restarts of one logical process). */
  readonly identity: string
  /** Which run of the logical process this is (0 first, +1 per restart). */
  readonly run: number
  /** SQLite: the journal's busy retries (default 10; several processes writing to one file want more). */
  readonly busyRetries?: number
}

export const readConfig = <C extends ChildConfig>(): C => JSON.parse(process.env.WF_CHILD ?? "{}") as C

/** The SQL journal and its `SqlClient`, on the configured database. */
export const journalLayer = (
  config: ChildConfig
): Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient> =>
  Layer.orDie(
    config.dialect === "sqlite"
      ? Sqlite.layer({
        filename: config.location,
        prefix: config.prefix,
        ...(config.busyRetries !== undefined ? { busyRetries: config.busyRetries } : {})
      })
      : Layer.provideMerge(
        DurableExecutionJournalSql.layer({ prefix: config.prefix }),
        PgClient.layer({ url: Redacted.make(config.location), maxConnections: 4 })
      )
  )

/** Effect's logs on stderr. */
export const stderrLogger = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))

/** An execution's exit as a protocol line's JSON: its value, or its cause printed. */
export const encodeExit = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isSuccess(exit)
    ? { _tag: "Success", value: exit.value }
    : { _tag: "Failure", cause: Cause.pretty(exit.cause) }

export const emit = (kind: string, token: string, info: Record<string, unknown> = {}): void => {
  process.stdout.write(`${kind} ${token} ${JSON.stringify(info)}\n`)
}

// --- stdin -------------------------------------------------------------------------------------------------

const gates = new Map<string, () => void>()
const commands: Array<string> = []
const commandWaiters: Array<(command: string) => void> = []
let open = false

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.startsWith("go ")) {
    const token = line.slice(3)
    const release = gates.get(token)
    gates.delete(token)
    release?.()
  } else if (line === "open") {
    open = true
    for (const release of gates.values()) release()
    gates.clear()
  } else {
    const waiter = commandWaiters.shift()
    if (waiter !== undefined) waiter(line)
    else commands.push(line)
  }
}).on("close", () => process.exit(3))

/** Waits for the next command line from the parent. */
export const awaitCommand: Effect.Effect<string> = Effect.async<string>((resume) => {
  const command = commands.shift()
  if (command !== undefined) resume(Effect.succeed(command))
  else commandWaiters.push((line) => resume(Effect.succeed(line)))
})

// --- timing ------------------------------------------------------------------------------------------------

let engineStartedAt = 0
let waitedAtGates = 0

/** Marks the moment the engine starts being built (the restart-to-resume delay is measured from here). */
export const markEngineStart = Effect.sync(() => {
  engineStartedAt = performance.now()
})

/**
 * A gate: reports `gate <token> <info>` with timings (`sinceBoot`: ms since the process started;
 * `sinceEngine`: ms since the engine started being built, not counting time spent waiting at gates) and
 * waits for the parent's `go <token>` (or `open`).
 */
export const gate = (token: string, info: Record<string, unknown>): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const now = performance.now()
    emit("gate", token, {
      ...info,
      sinceBoot: Math.round(now),
      sinceEngine: Math.round((now - engineStartedAt - waitedAtGates) * 10) / 10
    })
    if (open) return resume(Effect.void)
    gates.set(token, () => {
      waitedAtGates += performance.now() - now
      resume(Effect.void)
    })
  })

/** Runs the child's program, then exits (1 with the error on stderr if it failed). */
export const main = (program: Effect.Effect<void, unknown>): void => {
  Effect.runPromise(program.pipe(Effect.provide(stderrLogger))).then(
    () => process.exit(0),
    (error) => {
      console.error("child failed:", error)
      process.exit(1)
    }
  )
}
