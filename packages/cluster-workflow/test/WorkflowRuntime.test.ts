/**
 * WorkflowRuntime, WorkflowRuntimeMessage and WorkflowRuntimeState through their subpaths, as 2024
 * programs use them: `attempt` runs, resumes after crashes (the 2024 `retryWhileCrashes` test, with
 * `Activity.currentAttempt` going 0, 1, 2, 3) and returns recorded results; the coordinator's data types
 * build and match as in 2024.
 */
import * as Activity from "@effect-cluster/cluster-workflow/Activity"
import * as CrashableRuntime from "@effect-cluster/cluster-workflow/CrashableRuntime"
import * as DurableExecutionJournal from "@effect-cluster/cluster-workflow/DurableExecutionJournal"
import * as DurableExecutionJournalInMemory from "@effect-cluster/cluster-workflow/DurableExecutionJournalInMemory"
import * as Workflow from "@effect-cluster/cluster-workflow/Workflow"
import * as WorkflowEngine from "@effect-cluster/cluster-workflow/WorkflowEngine"
import * as WorkflowRuntime from "@effect-cluster/cluster-workflow/WorkflowRuntime"
import * as WorkflowRuntimeMessage from "@effect-cluster/cluster-workflow/WorkflowRuntimeMessage"
import * as WorkflowRuntimeState from "@effect-cluster/cluster-workflow/WorkflowRuntimeState"
import * as Message from "@effect-cluster/cluster/Message"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { pipe } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"

class StartWorkflowRequest extends Message.TaggedMessage<StartWorkflowRequest>()(
  "StartWorkflowRequest",
  Schema.String,
  Schema.Number,
  { id: Schema.String },
  (_) => _.id
) {}

describe("WorkflowRuntime", () => {
  it.scoped("attempt runs a request to its result, and returns the recorded result afterwards", () =>
    Effect.gen(function*() {
      const runs = yield* Ref.make(0)
      const activity = Activity.make("count", Schema.Number, Schema.Never)(Ref.updateAndGet(runs, (n) => n + 1))
      const workflow = Workflow.make(StartWorkflowRequest, (request) =>
        request.id === "bad" ? Effect.fail("refused") : Effect.map(activity, (n) => n * 10))
      const journal = yield* Layer.build(DurableExecutionJournalInMemory.activityJournalInMemory)
      const attempt = (id: string) =>
        WorkflowRuntime.attempt(workflow)(new StartWorkflowRequest({ id })).pipe(Effect.provide(journal))
      // typed as in 2024: Effect<number, string>
      const first: Effect.Effect<number, string> = attempt("a")
      expect(yield* first).toBe(10)
      expect(yield* attempt("a")).toBe(10)
      expect(yield* Ref.get(runs)).toBe(1)
      expect(yield* Effect.flip(attempt("bad"))).toBe("refused")
    }))

  // On the live clock, as in 2024 (a TestClock helper fiber forked inside the crashed runtime would freeze).
  it.live("attempt resumes after crashes: currentAttempt goes 0, 1, 2, 3 through retryWhileCrashes", () =>
    Effect.gen(function*() {
      const journal = yield* Layer.build(DurableExecutionJournalInMemory.activityJournalInMemory)
      const valueRef = yield* Ref.make(0)
      const result = yield* CrashableRuntime.retryWhileCrashes((runtime) =>
        runtime.run(() => {
          const activity = pipe(
            Activity.currentAttempt,
            Effect.flatMap((attempt) =>
              pipe(
                Ref.get(valueRef),
                Effect.tap((value) => Effect.sync(() => expect(value).toEqual(attempt))),
                Effect.flatMap(() =>
                  attempt < 3
                    ? pipe(Ref.update(valueRef, (n) => n + 1), Effect.zipRight(runtime.crash))
                    : Effect.succeed(42)
                )
              )
            ),
            Activity.make("activity", Schema.Number, Schema.Never)
          )
          const workflow = Workflow.make(StartWorkflowRequest, () => activity)
          return WorkflowRuntime.attempt(workflow)(new StartWorkflowRequest({ id: "wf" }))
        }).pipe(Effect.provide(journal))
      )
      expect(result).toBe(42)
      expect(yield* Ref.get(valueRef)).toBe(3)
    }).pipe(Effect.scoped))

  it.scoped("interrupting attempt stops the execution without a result; attempting again resumes it", () =>
    Effect.gen(function*() {
      const journal = yield* Layer.build(DurableExecutionJournalInMemory.activityJournalInMemory)
      const gate = yield* Deferred.make<void>()
      const reached = yield* Deferred.make<void>()
      const firstRuns = yield* Ref.make(0)
      const first = Activity.make("first", Schema.Number, Schema.Never)(Ref.updateAndGet(firstRuns, (n) => n + 1))
      const second = Activity.make("second", Schema.Number, Schema.Never)(
        Effect.zipRight(Deferred.succeed(reached, undefined), Effect.as(Deferred.await(gate), 2))
      )
      const workflow = Workflow.make(StartWorkflowRequest, () => Effect.zipWith(first, second, (a, b) => a + b))
      const request = new StartWorkflowRequest({ id: "slow" })
      const attempt = WorkflowRuntime.attempt(workflow)(request).pipe(Effect.provide(journal))
      const running = yield* Effect.fork(attempt)
      yield* Deferred.await(reached)
      yield* Fiber.interrupt(running)
      const engine = yield* WorkflowEngine.make(workflow, { resumeOnStart: false }).pipe(Effect.provide(journal))
      expect(Option.isNone(yield* engine.poll("slow"))).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* attempt).toBe(3)
      expect(yield* Ref.get(firstRuns)).toBe(1)
      // the engine's status maps onto the 2024 state
      const state = WorkflowRuntimeState.fromExecutionState(yield* engine.status("slow"))
      expect(state).toEqual(Option.some(new WorkflowRuntimeState.Completed({ exit: Exit.succeed(3) })))
      expect(WorkflowRuntimeState.fromExecutionState(yield* engine.status("never-started"))).toEqual(
        Option.some(new WorkflowRuntimeState.NotStarted())
      )
      expect(Context.getOption(journal, DurableExecutionJournal.DurableExecutionJournal)._tag).toBe("Some")
    }))
})

describe("WorkflowRuntimeMessage and WorkflowRuntimeState", () => {
  it.effect("build and match with the 2024 tags", () =>
    Effect.gen(function*() {
      const signal = yield* Deferred.make<void>()
      const status = yield* Deferred.make<WorkflowRuntimeState.WorkflowRuntimeState<number, string>>()
      const messages: Array<WorkflowRuntimeMessage.WorkflowRuntimeMessage<number, string>> = [
        new WorkflowRuntimeMessage.RequestFork({ persistenceId: "wf__a", signal }),
        new WorkflowRuntimeMessage.RequestJoin({ persistenceId: "wf__a", signal }),
        new WorkflowRuntimeMessage.RequestYield(),
        new WorkflowRuntimeMessage.RequestComplete({ exit: Exit.succeed(1), signal }),
        new WorkflowRuntimeMessage.CheckStatus({ signal: status })
      ]
      expect(messages.map((m) => m._tag)).toEqual([
        "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestFork",
        "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestJoin",
        "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestYield",
        "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestComplete",
        "@effect/cluster-workflow/WorkflowRuntimeMessage/CheckStatus"
      ])
      expect(messages.map((m) =>
        WorkflowRuntimeMessage.match(m, {
          onRequestFork: (f) => `fork ${f.persistenceId}`,
          onRequestJoin: (j) => `join ${j.persistenceId}`,
          onRequestYield: () => "yield",
          onRequestComplete: (c) => `complete ${Exit.isSuccess(c.exit) ? c.exit.value : "?"}`,
          onCheckStatus: () => "status"
        })
      )).toEqual(["fork wf__a", "join wf__a", "yield", "complete 1", "status"])

      const initial = WorkflowRuntimeState.initialState<StartWorkflowRequest>()
      const states: Array<WorkflowRuntimeState.WorkflowRuntimeState<number, string>> = [
        initial,
        new WorkflowRuntimeState.Completed({ exit: Exit.fail("no") })
      ]
      expect(states.map((s) =>
        WorkflowRuntimeState.match(s, {
          onNotStarted: (n) => n._tag,
          onReplay: () => "replay",
          onRunning: () => "running",
          onYielding: () => "yielding",
          onCompleted: (c) => c._tag
        })
      )).toEqual([
        "@effect/cluster-workflow/WorkflowRuntimeState/NotStarted",
        "@effect/cluster-workflow/WorkflowRuntimeState/Completed"
      ])
    }))
})
