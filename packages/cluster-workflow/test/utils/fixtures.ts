/**
 * Shared fixtures: messages, and activities that record every run of their body.
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, Workflow } from "@effect-cluster/cluster-workflow"
import { Effect, Schema } from "effect"

/** Records each activity body run: (activity id, attempt). */
export class RunLog {
  readonly runs: Array<{ readonly id: string; readonly attempt: number }> = []
  count(id: string) {
    return this.runs.filter((run) => run.id === id).length
  }
  ids() {
    return this.runs.map((run) => run.id)
  }
}

/** An activity whose body records its run and returns `value` (or fails with `fail`). */
export const recorded = <A>(
  log: RunLog,
  id: string,
  value: A,
  schema: Schema.Schema<A, any, never>,
  options?: { readonly fail?: string; readonly body?: Effect.Effect<void> }
) =>
  Activity.make(id, schema, Schema.String)(
    Effect.gen(function*() {
      const attempt = yield* Activity.currentAttempt
      log.runs.push({ id, attempt })
      if (options?.body) yield* options.body
      if (options?.fail !== undefined) return yield* Effect.fail(options.fail)
      return value
    })
  )

export class Order extends Message.TaggedMessage<Order>()(
  "Order",
  Schema.String,
  Schema.Number,
  { orderId: Schema.String, amount: Schema.Number },
  (_) => _.orderId
) {}

export class Refund extends Message.TaggedMessage<Refund>()(
  "Refund",
  Schema.String,
  Schema.String,
  { refundId: Schema.String },
  (_) => _.refundId
) {}

/** A workflow of three recorded steps (`amount-<orderId>`, `charge`, `ship`): returns amount * 100 + 7. */
export const threeSteps = (log: RunLog) =>
  Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      const total = yield* recorded(log, `amount-${order.orderId}`, order.amount, Schema.Number)
      yield* recorded(log, "charge", undefined, Schema.Void)
      const code = yield* recorded(log, "ship", 7, Schema.Number)
      return total * 100 + code
    }))
