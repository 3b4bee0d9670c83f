/**
 * The demo's workflow: the seed program's ProcessPayment (examples/process-payment.ts), the same message,
 * the same three activities built inside the workflow's body, in the same order. Two changes: instead of
 * logging, each activity body records its side effect (order, activity, pod, attempt, idempotency key) in a
 * table of the database, so that the demo can count how many times each body really ran; and the card
 * charge waits 100 ms after recording, as for a payment provider's answer, so that a pod killed at any
 * moment has charges in flight (each is sent again by the pod that resumes it, with the same idempotency
 * key, which is what a provider deduplicates on).
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, Workflow } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, type Duration, Effect, Layer, Schedule, Schema } from "effect"

/** The seed's message. */
export class ProcessPaymentMessage extends Message.TaggedMessage<ProcessPaymentMessage>()(
  `ProcessPaymentMessage`,
  Schema.String,
  Schema.Number,
  {
    orderId: Schema.String,
    cardNumber: Schema.String,
    email: Schema.String,
    deliveryAddress: Schema.String
  },
  (_) => _.orderId
) {}

/** The table of side effects: one row per run of an activity body. */
export const effectsTable = "demo_payment_effects"

/** Where an activity body records that it ran; `pod` names the process it ran in. */
export class PaymentEffects extends Context.Tag("examples/demo/PaymentEffects")<PaymentEffects, {
  readonly pod: string
  readonly record: (row: {
    readonly orderId: string
    readonly activity: string
    readonly attempt: number
    readonly idempotencyKey: string
  }) => Effect.Effect<void>
}>() {}

/** Creates the side-effect table (if absent). */
export const createEffectsTable = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe(`CREATE TABLE IF NOT EXISTS ${effectsTable} (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id TEXT NOT NULL,
  activity TEXT NOT NULL,
  pod TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL,
  at BIGINT NOT NULL
)`))

/** SQLite's "another process holds the write lock" (the pods share one file). */
const isBusy = (error: SqlError): boolean => {
  const code = (error.cause as { code?: unknown } | null)?.code
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
}

/** Retries of a busy write: 5 ms, growing, at most 100 ms apart, jittered, for a few seconds. */
const busyRetry = Schedule.exponential("5 millis").pipe(
  Schedule.union(Schedule.spaced("100 millis")),
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(100))
)

/**
 * `PaymentEffects` writing to the side-effect table through the journal's SQL client; a write that meets
 * another process's lock is retried (any other error is a defect, which fails the workflow).
 */
export const layerPaymentEffects = (pod: string): Layer.Layer<PaymentEffects, never, SqlClient.SqlClient> =>
  Layer.effect(
    PaymentEffects,
    Effect.map(SqlClient.SqlClient, (sql) => ({
      pod,
      record: (row) =>
        sql`INSERT INTO ${sql(effectsTable)} ${
          sql.insert({
            order_id: row.orderId,
            activity: row.activity,
            pod,
            attempt: row.attempt,
            idempotency_key: row.idempotencyKey,
            at: Date.now()
          })
        }`.pipe(Effect.retry({ schedule: busyRetry, while: isBusy }), Effect.orDie)
    }))
  )

/** The body of an activity: record the side effect, then answer (after `latency`, if given). */
const sideEffect = <A>(activity: string, orderId: string, value: A, latency?: Duration.DurationInput) =>
  Effect.gen(function*() {
    const effects = yield* PaymentEffects
    yield* effects.record({
      orderId,
      activity,
      attempt: yield* Activity.currentAttempt,
      idempotencyKey: yield* Activity.idempotencyKey
    })
    if (latency !== undefined) yield* Effect.sleep(latency)
    return value
  })

// The seed's activities; each now also takes the order id, to label its side effect.
const getTotalAmountActivity = (orderId: string) =>
  Activity.make(`get-amount-due-${orderId}`, Schema.Number, Schema.String)(
    sideEffect("get-amount-due", orderId, 100)
  )

const chargeCreditCardActivity = (orderId: string, cardNumber: string, _totalAmount: number) =>
  Activity.make(`charge-credit-card-${cardNumber}`, Schema.Void, Schema.String)(
    sideEffect("charge-credit-card", orderId, undefined, "100 millis")
  )

const createShippingTrackingCodeActivity = (orderId: string, deliveryAddress: string) =>
  Activity.make(`create-shipping-tracking-code-${deliveryAddress}`, Schema.Number, Schema.String)(
    sideEffect("create-shipping-tracking-code", orderId, 1)
  )

/** The activities of one workflow, in order (as named in the side-effect table). */
export const activityNames = ["get-amount-due", "charge-credit-card", "create-shipping-tracking-code"] as const

/** The seed's workflow. */
export const processPaymentWorkflow = Workflow.make(ProcessPaymentMessage, (message) =>
  Effect.gen(function*() {
    const totalAmount = yield* getTotalAmountActivity(message.orderId)
    yield* chargeCreditCardActivity(message.orderId, message.cardNumber, totalAmount)
    const trackingCode = yield* createShippingTrackingCodeActivity(message.orderId, message.deliveryAddress)
    return trackingCode
  }))

/** The message of order `i`. */
export const order = (i: number) =>
  new ProcessPaymentMessage({
    orderId: `order-${i}`,
    cardNumber: `card-${i}`,
    email: `customer-${i}@example.com`,
    deliveryAddress: `${i} Main Street`
  })

/** The journal's table prefix. */
export const journalPrefix = "demo"
