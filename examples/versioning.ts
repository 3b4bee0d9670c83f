// Versioning (docs/versioning.md). Version 1 of an onboarding workflow emails the customer; version 2
// texts them instead, behind `Workflow.patched("sms-instead-of-email")`. An execution started on v1 and
// finished by v2 code keeps the v1 path (its journal went past the marker's place without it); a new one
// takes the v2 path (the marker is journaled). Both engines share one journal, as two deployments would.
// Run it with `pnpm exec tsx --conditions=source examples/versioning.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableDeferred,
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowContext,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Console, Effect, Exit, Schema } from "effect"

class Onboard extends Message.TaggedMessage<Onboard>()(
  "Onboard",
  Schema.Never,
  Schema.String,
  { customerId: Schema.String },
  (_) => _.customerId
) {}

const Verified = DurableDeferred.make("verified")

const step = (id: string) => Activity.make(id, Schema.String, Schema.Never)(Effect.succeed(id))

/** The 2024 version argument: recorded at start, kept by the execution whatever code resumes it. */
const withVersion = (label: string) => (effect: Effect.Effect<string, never, WorkflowContext.WorkflowContext>) =>
  Effect.flatMap(WorkflowContext.WorkflowContext, (context) =>
    Effect.map(effect, (channel) => `${channel} (started on ${context.version}, finished by ${label})`))

const v1 = Workflow.make(
  Onboard,
  () =>
    Effect.gen(function*() {
      yield* step("create-account")
      yield* DurableDeferred.await(Verified)
      return yield* step("email")
    }).pipe(withVersion("v1")),
  () => "v1"
)

const v2 = Workflow.make(
  Onboard,
  () =>
    Effect.gen(function*() {
      yield* step("create-account")
      if (yield* Workflow.patched("sms-instead-of-email")) {
        yield* DurableDeferred.await(Verified)
        return yield* step("sms")
      }
      yield* DurableDeferred.await(Verified)
      return yield* step("email")
    }).pipe(withVersion("v2")),
  () => "v2"
)

const awaitSuspended = (engine: WorkflowEngine.WorkflowEngine<Onboard>, id: string) =>
  Effect.gen(function*() {
    while ((yield* engine.status(id))._tag !== "Suspended") yield* Effect.sleep("1 millis")
  })

const main = Effect.gen(function*() {
  const journal = yield* DurableExecutionJournalInMemory.make
  const onJournal = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)

  // deployment 1: "old" starts and waits for verification
  yield* Effect.gen(function*() {
    const engine = yield* WorkflowEngine.makeScoped(v1)
    yield* engine.sendDiscard(new Onboard({ customerId: "old" }))
    yield* awaitSuspended(engine, "old")
    yield* Console.log("v1 engine: old is waiting")
  }).pipe(Effect.scoped, onJournal)

  // deployment 2: "new" starts on v2; both are verified and finish on v2 code
  yield* Effect.gen(function*() {
    const engine = yield* WorkflowEngine.makeScoped(v2)
    yield* engine.sendDiscard(new Onboard({ customerId: "new" }))
    yield* awaitSuspended(engine, "new")
    for (const id of ["old", "new"]) {
      yield* engine.signal(id, Verified, Exit.void)
      const result = yield* engine.result(id)
      yield* Console.log(`${id}: ${Exit.isSuccess(result) ? result.value : "failed"}`)
    }
  }).pipe(Effect.scoped, onJournal)

  const events = yield* journal.events({ workflow: "Onboard", executionId: "new" }, 0)
  const marker = events.find((event) => event.stepKind === "patch")
  yield* Console.log(`new's journal has the marker: ${marker?.stepId}`)
})

Effect.runPromise(main)
