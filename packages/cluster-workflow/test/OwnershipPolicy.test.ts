/**
 * Who runs an execution when an engine's liveness registration is lost (PostgreSQL: its session died;
 * here the journal reports the loss on demand). The in-process engine stops what it runs there, since
 * other engines may now take it over; the cluster engine keeps it, since the shard's owner decides and the
 * shard has not moved (stopping would run the body again on the same pod). Live clock, SQLite file.
 */
import { Message, Sharding } from "@effect-cluster/cluster"
import {
  Activity,
  ClusterWorkflowEngine,
  DurableExecutionJournal,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Ref, Schema } from "effect"
import { singlePod } from "../../cluster/test/utils/cluster.js"
import { eventuallyLive as until } from "../../cluster/test/utils/network.js"
import { sharedSqlite, wrappingRegistrations } from "./utils/journals.js"

class Job extends Message.TaggedMessage<Job>()("Job", Schema.Never, Schema.String, { id: Schema.String }, (job) => job.id) {}

interface Observed {
  /** Runs of the activity body that began. */
  readonly runs: Ref.Ref<number>
  /** Runs of the activity body that were interrupted. */
  readonly interrupted: Ref.Ref<number>
  /** Registrations the journal's `registerEngine` made (the engine registers again after a loss). */
  readonly registrations: Ref.Ref<number>
  /** Completed: the first registration is lost. */
  readonly lose: Deferred.Deferred<void>
  /** Completed: the activity body returns. */
  readonly gate: Deferred.Deferred<void>
}

const observe = Effect.all({
  runs: Ref.make(0),
  interrupted: Ref.make(0),
  registrations: Ref.make(0),
  lose: Deferred.make<void>(),
  gate: Deferred.make<void>()
})

const makeWorkflow = (observed: Observed) =>
  Workflow.make(Job, (job) =>
    Activity.make(`work-${job.id}`, Schema.String, Schema.Never)(
      Effect.gen(function*() {
        yield* Ref.update(observed.runs, (n) => n + 1)
        yield* Deferred.await(observed.gate)
        return `done ${job.id}`
      }).pipe(Effect.onInterrupt(() => Ref.update(observed.interrupted, (n) => n + 1)))
    ))

/**
 * The journal in context, whose first liveness registration is lost when `observed.lose` completes: with
 * a journal error (a session that died), or with a defect.
 */
const losingRegistration = (observed: Observed, how: "error" | "defect") =>
  Layer.effect(
    DurableExecutionJournal.DurableExecutionJournal,
    Effect.map(DurableExecutionJournal.DurableExecutionJournal, (journal) =>
      wrappingRegistrations(journal, (registration, call) =>
        Effect.gen(function*() {
          yield* Ref.update(observed.registrations, (n) => n + 1)
          if (call > 0) return registration
          const lost = Effect.zipRight(
            Deferred.await(observed.lose),
            how === "defect"
              ? Effect.dieMessage("a defect in the session (test)")
              : new DurableExecutionJournal.JournalError({
                operation: "registerEngine",
                message: "session lost (test)",
                retryable: true
              })
          )
          return { ...registration, lost }
        })))
  )

/** A journal on a new SQLite file, open for the test's scope, whose first registration is lost on demand. */
const journalOf = (observed: Observed, how: "error" | "defect" = "error") =>
  Effect.flatMap(sharedSqlite, (database) =>
    Effect.map(
      Layer.build(losingRegistration(observed, how).pipe(Layer.provideMerge(database.journal()))),
      (context) => ({ context, prefix: database.prefix })
    ))

/** Runs one execution until its body is running, loses the engine's registration, waits for the engine to register again. */
const runAndLoseRegistration = (observed: Observed, engine: WorkflowEngine.WorkflowEngine<Job>) =>
  Effect.gen(function*() {
    yield* engine.sendDiscard(new Job({ id: "j1" }))
    yield* until(Effect.map(Ref.get(observed.runs), (n) => n === 1))
    yield* Deferred.succeed(observed.lose, undefined)
    // (the engine registers again only after it has acted on the loss)
    yield* until(Effect.map(Ref.get(observed.registrations), (n) => n >= 2))
  })

describe("ownership under a lost liveness registration", () => {
  const inProcessCases = [
    { how: "error", name: "the in-process engine stops the executions it runs (others may take them over)" },
    { how: "defect", name: "a defect in the registration's session counts as a loss: the engine registers again" }
  ] as const
  for (const { how, name } of inProcessCases) {
    it.scopedLive(name, () =>
      Effect.gen(function*() {
        const observed = yield* observe
        const { context } = yield* journalOf(observed, how)
        const engine = yield* WorkflowEngine.makeScoped(makeWorkflow(observed)).pipe(Effect.provide(context))
        yield* runAndLoseRegistration(observed, engine)
        yield* until(Effect.map(Ref.get(observed.interrupted), (n) => n === 1))
      }), 30_000)
  }

  it.scopedLive("the cluster engine keeps them: the shard's owner runs them until the shard moves", () =>
    Effect.gen(function*() {
      const observed = yield* observe
      const { context, prefix } = yield* journalOf(observed)
      const pod = yield* Layer.build(singlePod({ numberOfShards: 10 }))
      yield* Effect.provide(Sharding.registerScoped, pod)
      const engine = yield* WorkflowEngine.makeScoped(makeWorkflow(observed)).pipe(
        Effect.provide(ClusterWorkflowEngine.layer({ prefix, shardCheckInterval: "1 hour" })),
        Effect.provide(Context.merge(pod, context))
      )
      yield* runAndLoseRegistration(observed, engine)
      yield* Deferred.succeed(observed.gate, undefined)
      expect(yield* engine.result("j1")).toEqual(Exit.succeed("done j1"))
      expect(yield* Ref.get(observed.interrupted)).toBe(0)
      expect(yield* Ref.get(observed.runs)).toBe(1)
    }), 30_000)
})
