/**
 * Engine faults never become workflow outcomes (issue 9 #13, #16), callers are answered when the engine
 * closes (#7) and ride out a short journal outage (#19).
 */
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableDeferred,
  DurableExecutionJournal,
  Workflow,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Metric, MetricState, Schema, Scope, TestClock } from "effect"
import { awaitStatus, eventually, eventuallyEffect } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { describeJournals, failingClaimsOf, freshJournal } from "./utils/journals.js"

const Go = DurableDeferred.make("go")

class Label extends Message.TaggedMessage<Label>()(
  "Label",
  Schema.Never,
  Schema.String,
  { orderId: Schema.String },
  (_) => _.orderId
) {}

const stuckCount = Effect.map(
  Metric.value(Metric.tagged(WorkflowEngine.stuckExecutions, "workflow", "Order")),
  (state: MetricState.MetricState.Counter<number>) => state.count
)

describeJournals("Engine faults", (journalCase) => {
  it.scoped("a body that catches every defect still cannot turn an engine fault into its outcome", () =>
    Effect.gen(function*() {
      const inner = yield* freshJournal(journalCase)
      const { journal, failNext } = failingClaimsOf(inner, "Label", { message: "refused", retryable: false })
      const child = Workflow.make(Label, () => Effect.as(DurableDeferred.await(Go), "label"))
      const parent = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          const [exit] = yield* Effect.all([
            // the workflow swallows whatever the child step ends with, defects included
            Effect.exit(Workflow.executeChild(new Label({ orderId: order.orderId }))),
            DurableDeferred.await(Go)
          ], { concurrency: "unbounded" })
          return Exit.isSuccess(exit) ? 1 : -1
        }))
      const engine = yield* WorkflowEngine.make(Workflow.union(parent, child)).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* awaitStatus(engine, "o1/o1", "Suspended")
      // the parent replays and re-joins its child, whose claim is refused (not retryable)
      failNext(1)
      yield* engine.signal("o1", Go, Exit.void)
      yield* eventuallyEffect(engine.status("o1"), (status) => status._tag !== "Running")
      const status = yield* engine.status("o1")
      // not "Completed" with -1: the fault stopped or stuck the execution, and nothing was recorded
      expect(status._tag).not.toBe("Completed")
      expect(status._tag).not.toBe("Failed")
    }))

  it.scoped("non-determinism is a stuck state with both step names; rolling back or a patched branch un-sticks it", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const run = <R>(workflow: Workflow.Workflow<Order, R>, identity: string, resumeOnStart = true) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const engine = yield* WorkflowEngine.make(workflow, { identity, resumeOnStart }).pipe(
            Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
            Scope.extend(scope)
          )
          return { engine, close: Scope.close(scope, Exit.void) }
        })
      const v1 = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "charge", 1, Schema.Number)
          yield* DurableDeferred.await(Go)
          return 1
        }))
      // v2 inserts a step where v1 recorded the wait
      const v2 = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "charge", 1, Schema.Number)
          yield* recorded(log, "notify", undefined, Schema.Void)
          yield* DurableDeferred.await(Go)
          return 2
        }))
      // v3 puts the new step behind a version marker
      const v3 = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "charge", 1, Schema.Number)
          if (yield* Workflow.patched("notify")) yield* recorded(log, "notify", undefined, Schema.Void)
          yield* DurableDeferred.await(Go)
          return 3
        }))
      const first = yield* run(v1, "v1")
      yield* first.engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* first.engine.sendDiscard(new Order({ orderId: "o2", amount: 1 }))
      yield* awaitStatus(first.engine, "o1", "Suspended")
      yield* awaitStatus(first.engine, "o2", "Suspended")
      yield* first.close

      const before = yield* stuckCount
      const second = yield* run(v2, "v2")
      yield* second.engine.signal("o1", Go, Exit.void)
      yield* second.engine.signal("o2", Go, Exit.void)
      const stuck = yield* awaitStatus(second.engine, "o1", "Stuck")
      assert(stuck._tag === "Stuck" && WorkflowError.isNonDeterminismError(stuck.error))
      expect(stuck.error.expected).toContain("go")
      expect(stuck.error.actual).toContain("notify")
      yield* awaitStatus(second.engine, "o2", "Stuck")
      // counted (and logged) once each execution has left the engine
      yield* eventuallyEffect(stuckCount, (count) => count >= before + 2)
      // a caller learns why, typed; nothing was recorded as the outcome and no new step ran
      expect(yield* Effect.flip(second.engine.result("o1"))).toMatchObject({ _tag: "NonDeterminismError" })
      expect(log.count("notify")).toBe(0)
      const events = yield* journal.events({ workflow: "Order", executionId: "o1" }, 0)
      expect(events.map((e) => e.kind)).not.toContain("ExecutionCompleted")
      yield* second.close

      // the patched code, resumed by hand, carries o2 on (this engine retries nothing by itself)
      const third = yield* run(v3, "v3", false)
      yield* third.engine.resume("o2")
      expect(yield* third.engine.result("o2")).toEqual(Exit.succeed(3))
      expect((yield* third.engine.status("o1"))._tag).toBe("Stuck")
      yield* third.close

      // rolling back: the v1 engine retries its stuck executions when it starts
      const fourth = yield* run(v1, "v1-again")
      // (in the background: until then a caller is told the execution is stuck)
      yield* awaitStatus(fourth.engine, "o1", "Completed")
      expect(yield* fourth.engine.result("o1")).toEqual(Exit.succeed(1))
      expect(log.count("notify")).toBe(0)
      yield* fourth.close
    }))

  it.scopedLive("callers outside the engine's scope fail with EngineClosedError when it closes, and later ones at once (live clock)", () =>
    Effect.gen(function*() {
      let started = false
      const workflow = Workflow.make(Order, () =>
        Activity.make("a", Schema.Number, Schema.Never)(Effect.zipRight(Effect.sync(() => (started = true)), Effect.never)))
      const journal = yield* freshJournal(journalCase)
      const engineScope = yield* Scope.make()
      const engine = yield* WorkflowEngine.make(workflow).pipe(
        Scope.extend(engineScope),
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      const caller = yield* Effect.forkDaemon(engine.execute(new Order({ orderId: "o1", amount: 1 })))
      yield* eventually(() => started, "activity started")
      yield* Scope.close(engineScope, Exit.void)
      const exit = yield* Fiber.await(caller)
      assert(Exit.isFailure(exit))
      expect(yield* Effect.flip(exit)).toMatchObject({ _tag: "EngineClosedError", identity: engine.identity })
      expect(yield* Effect.flip(engine.execute(new Order({ orderId: "o2", amount: 1 })))).toMatchObject({
        _tag: "EngineClosedError"
      })
      const sent = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      assert(Exit.isFailure(sent))
      expect(sent.cause.toString()).toContain("EngineClosedError")
    }))

  it.scoped("result rides out retryable journal errors until the caller's own timeout", () =>
    Effect.gen(function*() {
      const inner = yield* freshJournal(journalCase)
      let failGets = 0
      let failed = 0
      const journal: DurableExecutionJournal.Journal = {
        ...inner,
        get: (key) =>
          Effect.suspend(() => {
            if (failGets > 0) {
              failGets--
              failed++
              return Effect.fail(
                new DurableExecutionJournal.JournalError({ operation: "get", message: "connection lost", retryable: true })
              )
            }
            return inner.get(key)
          })
      }
      const workflow = Workflow.make(Order, () => Effect.succeed(7))
      const engine = yield* WorkflowEngine.make(workflow).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      expect(yield* engine.execute(new Order({ orderId: "o1", amount: 1 }))).toBe(7)
      // a short outage: five reads fail, then the database is back
      failGets = 5
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(7))
      expect(failed).toBe(5)
      // a longer one ends with the caller's own timeout
      failGets = 1_000_000
      const waiting = yield* Effect.fork(Effect.flip(engine.result("o1", { timeout: "1 minute" })))
      yield* eventually(() => failed > 10, "the caller keeps retrying")
      yield* TestClock.adjust("1 minute")
      const timedOut = yield* Fiber.join(waiting)
      expect(timedOut._tag).toBe("ResultTimeoutError")
    }))
})
