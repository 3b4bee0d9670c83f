/**
 * The workflow of the chaos test (ClusterChaos.test.ts), run by its pod processes (chaosPod.ts), and what
 * the test checks it against.
 *
 * `ChaosPayment` is ProcessPayment-shaped: reserve (compensated by release), a durable sleep of 200-500 ms,
 * for one payment in five a signal (the approver), charge (compensated by refund), for one in ten an
 * authorisation that is declined (the saga: refund, then release, and the workflow fails with "declined"),
 * a ledger entry written by a transactional activity, and ship. Every activity and compensation body
 * records its run in `<prefix>_effects` (pod incarnation, attempt, idempotency key, database clock); the
 * ledger entry goes to `<prefix>_ledger` in the journal's transaction. Every run of the workflow's body on
 * a pod (a first run, a replay after a sleep, a signal or a takeover) records its start and its end in
 * `<prefix>_runs` (pod incarnation, shard, the shard's epoch on that pod; its start by the machine's clock as
 * the body began, its end by the database clock once the body has ended).
 */
import { Message, Sharding } from "@effect-cluster/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Exit, Schedule, Schema } from "effect"
import * as Activity from "../../src/Activity.js"
import * as DurableDeferred from "../../src/DurableDeferred.js"
import { rootEntityId } from "../../src/internal/cluster/protocol.js"
import * as Workflow from "../../src/Workflow.js"

export type Kind = "plain" | "signal" | "decline"

/** The kind of the i-th payment: one in ten declined, one in five waits for a signal, the rest plain. */
export const kindOf = (i: number): Kind => i % 10 === 3 ? "decline" : i % 5 === 1 ? "signal" : "plain"
export const sleepMillis = (i: number): number => 200 + (i * 53) % 301
export const approverOf = (i: number): string => `approver-${i}`
export const idOf = (i: number): string => `pay-${i}`
export const indexOf = (id: string): number => Number(id.slice(4))

/** What the i-th payment ends with: its status, and text its recorded result contains. */
export const expectedOutcome = (i: number): { readonly status: "completed" | "failed"; readonly contains: string } =>
  kindOf(i) === "decline"
    ? { status: "failed", contains: "declined" }
    : { status: "completed", contains: `${idOf(i)}:${i * 10}:${kindOf(i) === "signal" ? approverOf(i) : "auto"}` }

/** The activity and compensation bodies the i-th payment records (each at least once). */
export const bodiesOf = (i: number): ReadonlyArray<string> =>
  kindOf(i) === "decline" ? ["authorize", "charge", "refund", "release", "reserve"] : ["charge", "reserve", "ship"]

export class ChaosPayment extends Message.TaggedMessage<ChaosPayment>()(
  "ChaosPayment",
  Schema.String,
  Schema.String,
  { id: Schema.String, amount: Schema.Number, kind: Schema.Literal("plain", "signal", "decline"), sleep: Schema.Number },
  (payment) => payment.id
) {}

export const paymentOf = (i: number) =>
  new ChaosPayment({ id: idOf(i), amount: i, kind: kindOf(i), sleep: sleepMillis(i) })

export const Approval = DurableDeferred.make("approval", { success: Schema.String })

export type Dialect = "sqlite" | "postgres"

/** The database's clock in milliseconds since the epoch, as SQL (SQLite's is the machine's clock). */
export const dbNow = (dialect: Dialect): string =>
  dialect === "postgres"
    ? "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    : "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

export const chaosTables = (prefix: string) => ({
  effects: `${prefix}_effects`,
  ledger: `${prefix}_ledger`,
  runs: `${prefix}_runs`
})

/** Creates the test's tables (before any pod starts). */
export const createChaosTables = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const t = chaosTables(prefix)
    yield* sql.unsafe(`CREATE TABLE ${t.effects} (execution_id TEXT NOT NULL, activity TEXT NOT NULL,
  pod TEXT NOT NULL, attempt INTEGER NOT NULL, idempotency_key TEXT NOT NULL, began BIGINT NOT NULL,
  at BIGINT NOT NULL)`)
    yield* sql.unsafe(`CREATE TABLE ${t.ledger} (execution_id TEXT NOT NULL, idempotency_key TEXT NOT NULL,
  amount INTEGER NOT NULL, pod TEXT NOT NULL, at BIGINT NOT NULL)`)
    yield* sql.unsafe(`CREATE TABLE ${t.runs} (run_id TEXT PRIMARY KEY, execution_id TEXT NOT NULL,
  pod TEXT NOT NULL, shard INTEGER NOT NULL, epoch BIGINT NOT NULL, started_at BIGINT NOT NULL, stopped_at BIGINT,
  ending TEXT)`)
  })

/** Where a pod process records: the tables' prefix, the dialect, and which incarnation of which pod it is. */
export interface Recorder {
  readonly prefix: string
  readonly dialect: Dialect
  /** `pod-<n>#<run>`: the pod and how many times it was restarted. */
  readonly incarnation: string
}

/**
 * A statement of the test's own bookkeeping, retried while it fails (SQLite: another process holds the
 * write lock for longer than the busy timeout).
 */
const persist = <A, E, R>(statement: Effect.Effect<A, E, R>) =>
  statement.pipe(Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 }), Effect.orDie)

/** The workflow, recording as `recorder` says. */
export const chaosWorkflow = (recorder: Recorder) => {
  const t = chaosTables(recorder.prefix)
  const now = dbNow(recorder.dialect)

  // `began`: when the body began, by the machine's clock (the database's too: PostgreSQL on 127.0.0.1, or
  // the SQLite file), taken before anything the body awaits; `at`: when its row was written.
  const record = (id: string, activity: string) =>
    Effect.gen(function*() {
      const began = Date.now()
      const sql = yield* SqlClient.SqlClient
      const attempt = yield* Activity.currentAttempt
      const key = yield* Activity.idempotencyKey
      yield* persist(sql`INSERT INTO ${sql(t.effects)} (execution_id, activity, pod, attempt, idempotency_key, began, at)
VALUES (${id}, ${activity}, ${recorder.incarnation}, ${attempt}, ${key}, ${began}, ${sql.literal(now)})`)
    })

  const recorded = <A>(activity: string, id: string, value: A, schema: Schema.Schema<A, any>) =>
    Activity.make(activity, schema, Schema.String)(Effect.as(record(id, activity), value))

  // The transactional activity: its row commits in the journal's transaction with its recorded result
  // (not retried: a failure rolls both back and the next run writes it).
  const ledger = (id: string, amount: number) =>
    Activity.make("ledger", Schema.Number, Schema.String)(
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const key = yield* Activity.idempotencyKey
        yield* Effect.orDie(sql`INSERT INTO ${sql(t.ledger)} (execution_id, idempotency_key, amount, pod, at)
VALUES (${id}, ${key}, ${amount}, ${recorder.incarnation}, ${sql.literal(now)})`)
        return amount
      })
    ).pipe(Activity.transactional)

  let runs = 0
  /** Records the body's run on this pod: its start now, its end (however it ends) when it ends. */
  const observed = <A, E, R>(id: string, body: Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const sharding = yield* Sharding.Sharding
        const shard = sharding.getShardId(rootEntityId(ChaosPayment._tag, id)).value
        const epoch = (yield* sharding.servedShardEpochs).get(shard) ?? -1
        const runId = `${recorder.incarnation}/${++runs}`
        // (when the body began, by the machine's clock, as `began` above: the row may be written much later
        // under load, after the shard has moved and its next owner's run has begun)
        const began = Date.now()
        yield* persist(sql`INSERT INTO ${sql(t.runs)} (run_id, execution_id, pod, shard, epoch, started_at)
VALUES (${runId}, ${id}, ${recorder.incarnation}, ${shard}, ${epoch}, ${began})`)
        return runId
      }),
      () => body,
      (runId, exit) =>
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          persist(sql`UPDATE ${sql(t.runs)} SET stopped_at = ${sql.literal(now)}, ending = ${
            Exit.isSuccess(exit) ? "success" : Exit.isInterrupted(exit) ? "interrupted" : "failure"
          } WHERE run_id = ${runId}`))
    )

  return Workflow.make(ChaosPayment, (payment) =>
    observed(
      payment.id,
      Effect.gen(function*() {
        const amount = yield* recorded("reserve", payment.id, payment.amount, Schema.Number).pipe(
          Workflow.withCompensation((_: number) => record(payment.id, "release"))
        )
        yield* Workflow.sleep("settle", `${payment.sleep} millis`)
        const approver = payment.kind === "signal" ? yield* DurableDeferred.await(Approval) : "auto"
        yield* recorded("charge", payment.id, undefined, Schema.Void).pipe(
          Workflow.withCompensation((_: void) => record(payment.id, "refund"))
        )
        if (payment.kind === "decline") {
          yield* Activity.make("authorize", Schema.Void, Schema.String)(
            Effect.zipRight(record(payment.id, "authorize"), Effect.fail("declined"))
          )
        }
        yield* ledger(payment.id, payment.amount)
        const code = yield* recorded("ship", payment.id, amount * 10, Schema.Number)
        return `${payment.id}:${code}:${approver}`
      })
    ))
}
