// Cancellation (docs/cancellation.md). A booking charges a card and reserves a seat (each with a saga
// compensation), then waits for the airline's confirmation. A caller that gives up waiting does not stop
// it; `engine.cancel` does: the request is journaled, the execution is interrupted, the compensations of
// the completed activities run in reverse order, and every caller sees `WorkflowCancelledError`.
// Run it with `pnpm exec tsx --conditions=source examples/cancellation.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableDeferred,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import { Cause, Console, Effect, Exit, Option, Schema } from "effect"

class Book extends Message.TaggedMessage<Book>()(
  "Book",
  Schema.String,
  Schema.String,
  { bookingId: Schema.String },
  (_) => _.bookingId
) {}

const Confirmed = DurableDeferred.make("confirmed", { success: Schema.String })

const chargeCard = Activity.make("charge-card", Schema.String, Schema.String)(
  Effect.as(Console.log("charge card"), "charge-1")
).pipe(Workflow.withCompensation((chargeId) => Console.log(`refund ${chargeId}`)))

const reserveSeat = Activity.make("reserve-seat", Schema.String, Schema.String)(
  Effect.as(Console.log("reserve seat"), "seat-12A")
).pipe(Workflow.withCompensation((seat) => Console.log(`release ${seat}`)))

const book = Workflow.make(Book, () =>
  Effect.gen(function*() {
    yield* chargeCard
    yield* reserveSeat
    return yield* DurableDeferred.await(Confirmed)
  }))

const main = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(book)
  const booking = new Book({ bookingId: "b1" })

  // a caller that stops waiting (here: a 100 ms timeout interrupts `send`) detaches; the execution goes on
  const gaveUp = yield* Effect.timeout(engine.send(booking), "100 millis").pipe(Effect.option)
  yield* Console.log(`caller gave up: ${Option.isNone(gaveUp)}; b1 is ${(yield* engine.status("b1"))._tag}`)

  // cancel it: compensations run in reverse order
  yield* Console.log(`cancel: ${yield* engine.cancel("b1")}`)
  const error = yield* Effect.flip(engine.result("b1"))
  yield* Console.log(`result: ${error._tag}; b1 is ${(yield* engine.status("b1"))._tag}`)

  // the 2024 `send` signature reports it as a defect carrying the tagged class
  const exit = yield* Effect.exit(engine.send(booking))
  const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
  yield* Console.log(`send: defect is WorkflowCancelledError: ${WorkflowError.isWorkflowCancelledError(defect)}`)

  // cancelling a finished execution does nothing and says so
  yield* Console.log(`cancel again: ${yield* engine.cancel("b1")}`)
}).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)

Effect.runPromise(main)
