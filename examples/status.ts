// Status, listing and results (docs/status.md). Five orders end up completed, failed, sleeping, waiting for
// a signal and cancelled; `status` reports each, `list` pages through them, `poll` peeks at a result
// without waiting, `execute` with a timeout stops waiting without stopping the workflow, `result` fetches
// the result later, and `deleteCompleted` applies a retention age.
// Run it with `pnpm exec tsx --conditions=source examples/status.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  DurableDeferred,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Console, Effect, Exit, Option, Schema } from "effect"

class Order extends Message.TaggedMessage<Order>()(
  "Order",
  Schema.String,
  Schema.Number,
  { orderId: Schema.String },
  (_) => _.orderId
) {}

const Paid = DurableDeferred.make("paid")

const order = Workflow.make(Order, (o) =>
  Effect.gen(function*() {
    switch (o.orderId) {
      case "failed":
        return yield* Effect.fail("out of stock")
      case "sleeping":
        yield* Workflow.sleep("cool-off", "1 second")
        return 2
      case "waiting":
      case "cancelled":
        yield* DurableDeferred.await(Paid)
        return 3
      default:
        return 1
    }
  }))

const describe = (state: WorkflowEngine.ExecutionState<number, string>): string => {
  switch (state._tag) {
    case "Suspended":
      return `Suspended (${state.reason}${Option.isSome(state.wakeAt) ? ", wakes at a journaled deadline" : ""})`
    case "Completed":
    case "Failed":
      return `${state._tag} (${Exit.isSuccess(state.exit) ? state.exit.value : "failure"})`
    default:
      return state._tag
  }
}

const main = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(order)
  const ids = ["completed", "failed", "sleeping", "waiting", "cancelled"]
  for (const id of ids) yield* engine.sendDiscard(new Order({ orderId: id }))
  // wait until each has settled (finished or suspended)
  for (const id of ids) {
    while ((yield* engine.status(id))._tag === "Running") yield* Effect.sleep("1 millis")
  }
  yield* engine.cancel("cancelled")
  yield* Effect.either(engine.result("cancelled"))

  for (const id of [...ids, "nope"]) yield* Console.log(`${id}: ${describe(yield* engine.status(id))}`)

  // pages of two, in (workflow, execution id) order
  let page = yield* engine.list({ limit: 2 })
  const pages = [page.executions.map((e) => `${e.executionId}=${e.status}`).join(" ")]
  while (Option.isSome(page.next)) {
    page = yield* engine.list({ limit: 2, after: page.next.value })
    pages.push(page.executions.map((e) => `${e.executionId}=${e.status}`).join(" "))
  }
  yield* Console.log(`list: ${pages.join(" | ")}`)
  const suspended = yield* engine.list({ status: "suspended" })
  yield* Console.log(`suspended: ${suspended.executions.map((e) => `${e.executionId} on ${e.suspendedOn}`).join(", ")}`)

  // poll does not wait; execute with a timeout gives up waiting, not the workflow
  yield* Console.log(`poll waiting: ${Option.isNone(yield* engine.poll("waiting")) ? "not finished" : "finished"}`)
  const waited = yield* Effect.flip(engine.execute(new Order({ orderId: "waiting" }), { timeout: "20 millis" }))
  yield* Console.log(`execute waiting (20 ms): ${typeof waited === "string" ? waited : waited._tag}`)
  yield* engine.signal("waiting", Paid, Exit.void)
  const later = yield* engine.result("waiting")
  yield* Console.log(`result waiting: ${Exit.isSuccess(later) ? later.value : "failure"}`)

  // retention: delete executions that finished more than 50 ms ago; unfinished ones are never deleted
  yield* Effect.sleep("60 millis")
  const deleted = yield* engine.deleteCompleted("50 millis")
  yield* Console.log(`deleted: ${deleted}; completed is ${(yield* engine.status("completed"))._tag}, sleeping is ${(yield* engine.status("sleeping"))._tag}`)
  const woke = yield* engine.result("sleeping")
  yield* Console.log(`result sleeping: ${Exit.isSuccess(woke) ? woke.value : "failure"}`)
}).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)

Effect.runPromise(main)
