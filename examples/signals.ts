// Signals (durable deferreds, docs/signals.md). An expense waits for a manager's decision: a named, typed
// value that someone outside provides through `engine.signal`. The waiting execution is suspended; the
// value is journaled; the first value for a name wins; a rejection is a typed failure; a signal sent
// before the workflow waits is kept; a signal to an unknown execution is a typed error.
// Run it with `pnpm exec tsx --conditions=source examples/signals.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableDeferred,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Console, Effect, Schema } from "effect"

class Expense extends Message.TaggedMessage<Expense>()(
  "Expense",
  Schema.String, // failure: why it was not paid
  Schema.String, // success: the payment reference
  { expenseId: Schema.String, amount: Schema.Number },
  (_) => _.expenseId
) {}

/** The manager's decision: who approved, or why it was rejected. */
const Decision = DurableDeferred.make("decision", { success: Schema.String, failure: Schema.String })

const expense = Workflow.make(Expense, (claim) =>
  Effect.gen(function*() {
    const approver = yield* DurableDeferred.await(Decision)
    return yield* Activity.make("pay", Schema.String, Schema.String)(
      Effect.succeed(`paid ${claim.amount} (approved by ${approver})`)
    )
  }))

const main = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(expense)

  // e1 waits: it is suspended on the signal
  yield* engine.sendDiscard(new Expense({ expenseId: "e1", amount: 40 }))
  let status = yield* engine.status("e1")
  while (status._tag !== "Suspended") {
    yield* Effect.sleep("1 millis")
    status = yield* engine.status("e1")
  }
  yield* Console.log(`e1: Suspended on ${status.reason}`)
  const first = yield* engine.signal("e1", Decision, DurableDeferred.succeed(Decision, "grace"))
  const second = yield* engine.signal("e1", Decision, DurableDeferred.succeed(Decision, "alan"))
  yield* Console.log(`e1: first signal stored: ${first.stored}, second signal stored: ${second.stored}`)
  yield* Console.log(`e1: ${yield* engine.send(new Expense({ expenseId: "e1", amount: 40 }))}`)

  // e2 is rejected at once (the signal may land before the workflow waits: it is kept in the inbox), and
  // the workflow fails with the signal's typed failure
  yield* engine.sendDiscard(new Expense({ expenseId: "e2", amount: 900 }))
  yield* engine.signal("e2", Decision, DurableDeferred.fail(Decision, "over budget"))
  const rejected = yield* Effect.flip(engine.send(new Expense({ expenseId: "e2", amount: 900 })))
  yield* Console.log(`e2: failed: ${rejected}`)

  // a signal to an execution that does not exist
  const unknown = yield* Effect.flip(engine.signal("e3", Decision, DurableDeferred.succeed(Decision, "grace")))
  yield* Console.log(`e3: ${unknown._tag}`)
}).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)

Effect.runPromise(main)
