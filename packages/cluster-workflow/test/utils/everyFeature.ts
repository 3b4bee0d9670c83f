/**
 * A workflow that exercises every durable feature, and a driver for it (used by the crash property).
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, DurableDeferred, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { Effect, Exit, Fiber, Option, Schema, TestClock } from "effect"
import { Order } from "./fixtures.js"

export class Parcel extends Message.TaggedMessage<Parcel>()(
  "Parcel",
  Schema.String,
  Schema.Number,
  { parcelId: Schema.String },
  (_) => _.parcelId
) {}

export interface Run {
  readonly id: string
  readonly run: number
}

/** A workflow that uses every durable feature: activities (concurrent, retried, compensated), a timer, a signal, a child. */
export const makeWorkflow = (runs: Array<Run>, currentRun: () => number) => {
  const act = <A>(id: string, value: A, schema: Schema.Schema<A, any, never>, failUntilAttempt = 0) =>
    Activity.make(id, schema, Schema.String)(
      Effect.gen(function*() {
        const attempt = yield* Activity.currentAttempt
        runs.push({ id: `activity:${id}`, run: currentRun() })
        // a failure that does not depend on the attempt: the outcome must not depend on crashes
        if (attempt < failUntilAttempt) return yield* Effect.fail(`${id} failed`)
        return value
      })
    )
  const Go = DurableDeferred.make("go", { success: Schema.Number })
  const child = Workflow.make(Parcel, (parcel) => act(`label-${parcel.parcelId}`, 5, Schema.Number))
  const parent = Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      const a = yield* act("a", 1, Schema.Number)
      const [b, c] = yield* Effect.all([
        act("b", 2, Schema.Number),
        act("c", 3, Schema.Number, 1).pipe(Activity.retry({ times: 2, backoff: "1 second" }))
      ], { concurrency: "unbounded" })
      yield* Workflow.sleep("nap", "1 hour")
      const go = yield* DurableDeferred.await(Go)
      const label = yield* Workflow.executeChild(new Parcel({ parcelId: "p" }))
      const d = yield* act("d", 10, Schema.Number).pipe(
        Workflow.withCompensation(() =>
          Effect.sync(() => {
            runs.push({ id: "compensation:activity:d", run: currentRun() })
          })
        )
      )
      if (order.amount % 2 === 1) yield* act("e", 0, Schema.Number, 99)
      return a + b + c + go + label + d
    }))
  return { workflow: Workflow.union(parent, child), Go }
}

/** Drives one engine run: start, signal, and advance the clock until the result is there. */
export const drive = (
  engine: WorkflowEngine.WorkflowEngine<any>,
  message: Order,
  Go: DurableDeferred.DurableDeferred<number>,
  restore: <X, Y>(effect: Effect.Effect<X, Y>) => Effect.Effect<X, Y>
) =>
  Effect.gen(function*() {
    yield* engine.sendDiscard(message)
    yield* engine.signal(message.orderId, Go, Exit.succeed(100)).pipe(Effect.orDie)
    const result = yield* Effect.fork(engine.send(message))
    for (let i = 0; i < 1000; i++) {
      if (Option.isSome(yield* Fiber.poll(result))) break
      yield* restore(TestClock.adjust("5 minutes"))
    }
    return yield* Fiber.join(result)
  })

