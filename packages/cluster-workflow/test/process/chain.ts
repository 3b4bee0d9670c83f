/**
 * The workflow the real-process tests run (in child processes): five activities in a chain, each of whose
 * bodies records its run in a side table (the "outside world") and stops at gates the parent controls:
 * `<executionId>:<activity>:before` (inside the body, before its side effect) and
 * `<executionId>:<activity>:after` (after the side effect, before the result is recorded). The workflow body
 * also has gates `<executionId>:begin`, `<executionId>:between:<activity>` and `<executionId>:end`, which are
 * passed again on every replay.
 *
 * `ledger` is `Activity.transactional`: its side-table row is written on the journal's `SqlClient` inside
 * the transaction that records its result. The other activities write their row with a plain statement on
 * the same client, outside any journal transaction.
 */
import { Message } from "@effect-cluster/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Schedule, Schema } from "effect"
import * as Activity from "../../src/Activity.js"
import { ActivityContext } from "../../src/ActivityContext.js"
import * as Workflow from "../../src/Workflow.js"

export class Chain extends Message.TaggedMessage<Chain>()(
  "Chain",
  Schema.String,
  Schema.String,
  { chainId: Schema.String, amount: Schema.Number },
  (_) => _.chainId
) {}

/** The activities, in the order the workflow runs them. */
export const activityIds = ["reserve", "charge", "ledger", "ship", "notify"] as const
export type ActivityId = typeof activityIds[number]
/** The activity that runs in the journal's transaction. */
export const transactionalActivity: ActivityId = "ledger"

/** Every gate name of one execution, in the order a crash-free run passes them. */
export const gateNames: ReadonlyArray<string> = [
  "begin",
  ...activityIds.flatMap((id, i) => [
    `${id}:before`,
    `${id}:after`,
    ...(i < activityIds.length - 1 ? [`between:${id}`] : [])
  ]),
  "end"
]

/** The result of a crash-free run for `amount` (the workflow's result depends on nothing else). */
export const expectedResult = (amount: number): string => {
  const reserved = amount * 2
  const charged = reserved + 3
  const booked = charged * 5
  return `${booked}:${amount}!`
}

/** The side table ("outside world"): one row per activity body that got past its `before` gate. */
export const sideTable = (prefix: string) => `${prefix}_side`

export const createSideTable = (prefix: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe(`CREATE TABLE IF NOT EXISTS ${sideTable(prefix)} (
  execution_id TEXT NOT NULL,
  activity TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  run INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  identity TEXT NOT NULL
)`))

export interface SideRow {
  readonly execution_id: string
  readonly activity: string
  readonly attempt: number
  readonly run: number
  readonly pid: number
  readonly identity: string
}

export const readSideTable = (prefix: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe<SideRow>(
      `SELECT execution_id, activity, attempt, run, pid, identity FROM ${sideTable(prefix)}`
    )).pipe(Effect.map((rows) =>
      rows.map((row) => ({
        ...row,
        attempt: Number(row.attempt),
        run: Number(row.run),
        pid: Number(row.pid)
      }))
    ))

export interface ChainHooks {
  /** Stops at a gate until the parent lets it pass (or kills the process there). */
  readonly gate: (token: string, info: Record<string, unknown>) => Effect.Effect<void>
  readonly prefix: string
  readonly run: number
  readonly identity: string
}

const isBusy = (error: SqlError) => /SQLITE_BUSY|SQLITE_LOCKED|database is locked/i.test(String(error.cause ?? error))

/** The chain workflow; its activities need the journal's `SqlClient`. */
export const makeChain = (hooks: ChainHooks) => {
  const step = <A, I>(
    id: ActivityId,
    schema: Schema.Schema<A, I, never>,
    compute: () => A
  ) => {
    const activity = Activity.make(id, schema, Schema.String)(
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const context = yield* ActivityContext
        const attempt = context.currentAttempt
        const token = `${context.executionId}:${id}`
        yield* hooks.gate(`${token}:before`, { attempt })
        const insert = sql`INSERT INTO ${sql(sideTable(hooks.prefix))} ${
          sql.insert({
            execution_id: context.executionId,
            activity: id,
            attempt,
            run: hooks.run,
            pid: process.pid,
            identity: hooks.identity
          })
        }`
        // Another process may hold SQLite's write lock: the outside world retries its own writes, with a
        // capped backoff. Not in the transactional activity: there a failed write fails the journal's
        // transaction, which the engine retries as a whole.
        yield* (id === transactionalActivity ? insert : insert.pipe(
          Effect.retry({
            while: isBusy,
            schedule: Schedule.union(Schedule.exponential("5 millis"), Schedule.spaced("100 millis")),
            times: 100
          })
        )).pipe(Effect.orDie)
        yield* hooks.gate(`${token}:after`, { attempt })
        return compute()
      })
    )
    return id === transactionalActivity ? Activity.transactional(activity) : activity
  }

  return Workflow.make(Chain, (message) =>
    Effect.gen(function*() {
      const id = message.chainId
      yield* hooks.gate(`${id}:begin`, {})
      const reserved = yield* step("reserve", Schema.Number, () => message.amount * 2)
      yield* hooks.gate(`${id}:between:reserve`, {})
      const charged = yield* step("charge", Schema.Number, () => reserved + 3)
      yield* hooks.gate(`${id}:between:charge`, {})
      const booked = yield* step("ledger", Schema.Number, () => charged * 5)
      yield* hooks.gate(`${id}:between:ledger`, {})
      const code = yield* step("ship", Schema.String, () => `${booked}:${message.amount}`)
      yield* hooks.gate(`${id}:between:ship`, {})
      const notified = yield* step("notify", Schema.String, () => `${code}!`)
      yield* hooks.gate(`${id}:end`, {})
      return notified
    }))
}
