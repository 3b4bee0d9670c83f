// Durable timers (docs/timers.md). A reminder sleeps 300 ms with `Workflow.sleep`: the deadline is
// journaled, the execution is suspended (no fiber, nothing in the engine's memory) and the engine's one
// timer wakes it, never early. Then an approval is awaited with `Workflow.timeout`: nobody answers, so the
// durable deadline fails the wait with `TimeoutException`.
// Run it with `pnpm exec tsx --conditions=source examples/timers.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableDeferred,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Clock, Console, Effect, Option, Schema } from "effect"

class Remind extends Message.TaggedMessage<Remind>()(
  "Remind",
  Schema.Never,
  Schema.String,
  { reminderId: Schema.String },
  (_) => _.reminderId
) {}

class Approve extends Message.TaggedMessage<Approve>()(
  "Approve",
  Schema.Never,
  Schema.String,
  { requestId: Schema.String },
  (_) => _.requestId
) {}

const Approval = DurableDeferred.make("approval", { success: Schema.String })

const remind = Workflow.make(Remind, (reminder) =>
  Effect.gen(function*() {
    yield* Workflow.sleep("wait", "300 millis")
    return yield* Activity.make("notify", Schema.String, Schema.Never)(
      Effect.succeed(`reminded ${reminder.reminderId}`)
    )
  }))

const approve = Workflow.make(Approve, () =>
  Workflow.timeout("approval-timeout", "50 millis")(DurableDeferred.await(Approval)).pipe(
    Effect.catchTag("TimeoutException", () => Effect.succeed("no answer in time: escalated"))
  ))

const main = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(Workflow.union(remind, approve))

  const startedAt = yield* Clock.currentTimeMillis
  yield* engine.sendDiscard(new Remind({ reminderId: "r1" }))
  let status = yield* engine.status("r1")
  while (status._tag !== "Suspended") {
    yield* Effect.sleep("1 millis")
    status = yield* engine.status("r1")
  }
  const deadline = Option.getOrThrow(status.wakeAt).getTime()
  yield* Console.log(`r1: Suspended on ${status.reason}, deadline journaled: ${deadline >= startedAt + 300}`)
  // the suspension is committed before the execution leaves the engine's memory: wait for that moment
  while ((yield* engine.liveExecutions) > 0) yield* Effect.sleep("1 millis")
  yield* Console.log(`executions held in memory while it sleeps: ${yield* engine.liveExecutions}`)
  const result = yield* engine.result("r1")
  const wokeAt = yield* Clock.currentTimeMillis
  yield* Console.log(`r1: ${result._tag === "Success" ? result.value : "failed"}`)
  yield* Console.log(`woke at or after the deadline: ${wokeAt >= deadline}`)

  yield* Console.log(`a1: ${yield* engine.send(new Approve({ requestId: "a1" }))}`)
}).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)

Effect.runPromise(main)
