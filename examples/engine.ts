// The engine (docs/engine.md): identity, claims, resume on start. An export job is running when its
// engine shuts down (its scope closes): the body is interrupted and nothing is recorded. A restarted engine
// with the same identity resumes the job at once, with the next attempt. A graceful shutdown releases the
// engine's claims, so an engine with another identity takes a job over at once too (after a crash it would
// wait for the dead engine's death to be certain, or for its claim to expire: docs/engine.md).
// Run it with `pnpm exec tsx --conditions=source examples/engine.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Console, Effect, Exit, Option, Schema } from "effect"

class Export extends Message.TaggedMessage<Export>()(
  "Export",
  Schema.Never,
  Schema.String,
  { jobId: Schema.String },
  (_) => _.jobId
) {}

const exportRows = (jobId: string) =>
  Activity.make("export-rows", Schema.String, Schema.Never)(
    Effect.gen(function*() {
      const attempt = yield* Activity.currentAttempt
      yield* Console.log(`${jobId}: export attempt ${attempt} started`)
      // the first attempt hangs until its engine goes away
      if (attempt === 0) yield* Effect.never
      return `${jobId} exported on attempt ${attempt}`
    }).pipe(Effect.onInterrupt(() => Console.log(`${jobId}: export interrupted (engine closing)`)))
  )

const exportJob = Workflow.make(Export, (job) => exportRows(job.jobId))

const main = Effect.gen(function*() {
  const journal = yield* DurableExecutionJournalInMemory.make
  const onJournal = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
  const row = (jobId: string) =>
    Effect.map(journal.get({ workflow: "Export", executionId: jobId }), (row) => Option.getOrThrow(row))
  const startAndClose = (identity: string, jobId: string) =>
    Effect.gen(function*() {
      const engine = yield* WorkflowEngine.make(exportJob, { identity, claimLease: "300 millis" })
      yield* engine.sendDiscard(new Export({ jobId }))
      yield* Effect.sleep("20 millis")
    }).pipe(Effect.scoped, onJournal)

  // 1. pod-a shuts down while job-1 runs, then restarts with the same identity
  yield* startAndClose("pod-a", "job-1")
  const left = yield* row("job-1")
  yield* Console.log(`job-1 in the journal: ${left.status}, claimed by ${left.claimOwner}, result ${left.result}`)
  yield* Effect.gen(function*() {
    const engine = yield* WorkflowEngine.make(exportJob, { identity: "pod-a" })
    const result = yield* engine.result("job-1")
    yield* Console.log(`pod-a (restarted): ${Exit.isSuccess(result) ? result.value : "failed"}`)
  }).pipe(Effect.scoped, onJournal)

  // 2. pod-a shuts down while job-2 runs and releases its claim; pod-b takes the job over at once
  yield* startAndClose("pod-a", "job-2")
  const released = (yield* row("job-2")).claimOwner === null
  yield* Effect.gen(function*() {
    const engine = yield* WorkflowEngine.make(exportJob, { identity: "pod-b", orphanCheckInterval: "50 millis" })
    const result = yield* engine.result("job-2")
    yield* Console.log(`pod-b: ${Exit.isSuccess(result) ? result.value : "failed"}`)
    yield* Console.log(`pod-a released job-2's claim when it shut down: ${released}`)
    yield* Console.log(`job-2 claim epoch: ${(yield* row("job-2")).claimEpoch}`)
  }).pipe(Effect.scoped, onJournal)
})

Effect.runPromise(main)
