/**
 * `pnpm bench:peers`: one case on `@effect/workflow` 0.19 (the Effect organisation's workflow library) with
 * its in-memory engine (`WorkflowEngine.layerMemory`), or, with `--cluster`, on `@effect/cluster` 0.60's
 * `ClusterWorkflowEngine` over `SingleRunner` with SQL storage on the case's PostgreSQL database.
 *
 * The same workflow as this project's side: activities built inside the body on every call (as the
 * library's documentation writes them), the payload constructed per call, one `runPromise` per workflow.
 */
import * as ClusterWorkflowEngine from "@effect/cluster/ClusterWorkflowEngine"
import * as SingleRunner from "@effect/cluster/SingleRunner"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Activity from "@effect/workflow/Activity"
import * as DurableClock from "@effect/workflow/DurableClock"
import * as Workflow from "@effect/workflow/Workflow"
import * as WorkflowEngine from "@effect/workflow/WorkflowEngine"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Redacted, Schema } from "effect"
import {
  amountDue,
  type CaseResult,
  type CaseSpec,
  closedLoop,
  main,
  runTag,
  sleepers,
  trackingCode,
  wokeAt,
  type Workload
} from "../common.js"

const ProcessPayment = Workflow.make({
  name: "ProcessPayment",
  payload: { orderId: Schema.String, cardNumber: Schema.String, email: Schema.String, deliveryAddress: Schema.String },
  success: Schema.Number,
  error: Schema.String,
  idempotencyKey: (payload) => payload.orderId
})

const Nap = Workflow.make({
  name: "Nap",
  payload: { id: Schema.String, wakeAt: Schema.Number },
  success: Schema.Number,
  idempotencyKey: (payload) => payload.id
})

const body = <A>(workload: Workload, value: A): Effect.Effect<A> =>
  workload === "io" ? Effect.as(Effect.sleep("20 millis"), value) : Effect.succeed(value)

const paymentLayer = (workload: Workload) =>
  ProcessPayment.toLayer((payload) =>
    Effect.gen(function*() {
      const totalAmount = yield* Activity.make({
        name: `get-amount-due-${payload.orderId}`,
        success: Schema.Number,
        error: Schema.String,
        execute: body(workload, amountDue)
      })
      yield* Activity.make({
        name: `charge-credit-card-${payload.cardNumber}`,
        error: Schema.String,
        execute: body(workload, void totalAmount)
      })
      return yield* Activity.make({
        name: `create-shipping-tracking-code-${payload.deliveryAddress}`,
        success: Schema.Number,
        error: Schema.String,
        execute: body(workload, trackingCode)
      })
    })
  )

const napLayer = Nap.toLayer((nap) =>
  Effect.gen(function*() {
    const now = yield* Activity.make({ name: "now", success: Schema.Number, execute: Effect.sync(() => Date.now()) })
    // A threshold of 0: the library runs sleeps up to 60 s as in-memory activities by default, and this
    // workload is about durable sleeps.
    yield* DurableClock.sleep({ name: "nap", duration: Math.max(0, nap.wakeAt - now), inMemoryThreshold: "0 millis" })
    return yield* Activity.make({
      name: "woke",
      success: Schema.Number,
      execute: Effect.sync(() => {
        wokeAt.set(nap.id, Date.now())
        return 0
      })
    })
  })
)

const engineLayer = (spec: CaseSpec): Layer.Layer<WorkflowEngine.WorkflowEngine, unknown> => {
  if (!process.argv.includes("--cluster")) return WorkflowEngine.layerMemory
  if (spec.databaseUrl === undefined) throw new Error("@effect/cluster needs a PostgreSQL database")
  return ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(SingleRunner.layer({ runnerStorage: "sql" })),
    Layer.provide(PgClient.layer({ url: Redacted.make(spec.databaseUrl) }))
  )
}

const run = async (spec: CaseSpec): Promise<CaseResult> => {
  const workflows = spec.workload === "sleepers" ? napLayer : paymentLayer(spec.workload)
  const runtime = ManagedRuntime.make(
    Layer.provideMerge(workflows, engineLayer(spec)).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)))
  )
  await runtime.runPromise(Effect.void)
  const result = spec.workload === "sleepers"
    ? await sleepers(spec, (id, wakeAt) => runtime.runPromise(Nap.execute({ id, wakeAt }, { discard: true })).then(() => {}))
    : await closedLoop(spec, async (i) => {
      const code = await runtime.runPromise(ProcessPayment.execute({
        orderId: `order-${runTag}-${i}`,
        cardNumber: `card-${i}`,
        email: `customer-${i}@example.com`,
        deliveryAddress: `${i} Main Street`
      }))
      if (code !== trackingCode) throw new Error(`wrong result ${code}`)
    })
  await runtime.dispose()
  return result
}

main(run)
