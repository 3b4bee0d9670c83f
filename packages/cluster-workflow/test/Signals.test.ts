import {
  DurableDeferred,
  DurableExecutionJournal,
  Workflow,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Schema, TestClock } from "effect"
import { describeJournals, freshJournal } from "./utils/journals.js"
import { atEvent, runUntilCrash } from "./utils/crash.js"
import { awaitStatus, eventually, eventuallyEffect } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

const Approval = DurableDeferred.make("approval", { success: Schema.Number, failure: Schema.String })

const approvalWorkflow = (log: RunLog, gate?: Deferred.Deferred<void>) =>
  Workflow.make(Order, () =>
    Effect.gen(function*() {
      yield* recorded(log, "prepare", undefined, Schema.Void, gate ? { body: Deferred.await(gate) } : undefined)
      const approved = yield* DurableDeferred.await(Approval)
      yield* recorded(log, "finish", undefined, Schema.Void)
      return approved
    }))

describeJournals("Signals (durable deferreds)", (journalCase) => {
  it.scoped("suspends a waiting workflow and wakes it with the signal's value", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(log))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      const status = yield* awaitStatus(engine, "o1", "Suspended")
      assert(status._tag === "Suspended")
      expect(status.reason).toBe("signal:approval")
      yield* eventuallyEffect(engine.liveExecutions, (n) => n === 0)
      expect(yield* engine.signal("o1", Approval, Exit.succeed(42))).toEqual({ stored: true })
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(42))
      expect(log.ids()).toEqual(["prepare", "finish"])
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("keeps a signal sent before the workflow waits for it", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const gate = yield* Deferred.make<void>()
      const engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(log, gate))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => log.count("prepare") === 1)
      yield* engine.signal("o1", Approval, Exit.succeed(7))
      yield* Deferred.succeed(gate, undefined)
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(7))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("keeps the first value of a signal sent twice, and carries typed failures", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(log))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(engine, "o1", "Suspended")
      expect(yield* engine.signal("o1", Approval, Exit.fail("rejected"))).toEqual({ stored: true })
      expect(yield* engine.signal("o1", Approval, Exit.succeed(1))).toEqual({ stored: false })
      expect(yield* engine.result("o1")).toEqual(Exit.fail("rejected"))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("refuses a signal to an unknown execution with a typed error", () =>
    Effect.gen(function*() {
      const engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(new RunLog()))
      const error = yield* Effect.flip(engine.signal("nope", Approval, Exit.succeed(1)))
      expect(error).toBeInstanceOf(WorkflowError.ExecutionNotFoundError)
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("waits with a durable timeout", () =>
    Effect.gen(function*() {
      const workflow = Workflow.make(Order, () =>
        Workflow.timeout("approval-timeout", "1 day")(DurableDeferred.await(Approval)).pipe(
          Effect.catchTag("TimeoutException", () => Effect.succeed(-1))
        ))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.sendDiscard(new Order({ orderId: "late", amount: 1 }))
      yield* engine.sendDiscard(new Order({ orderId: "early", amount: 1 }))
      yield* awaitStatus(engine, "late", "Suspended")
      yield* awaitStatus(engine, "early", "Suspended")
      yield* engine.signal("early", Approval, Exit.succeed(3))
      expect(yield* engine.result("early")).toEqual(Exit.succeed(3))
      yield* TestClock.adjust("1 day")
      expect(yield* engine.result("late")).toEqual(Exit.succeed(-1))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("wakes a workflow signalled while it is suspending (before the suspension commits)", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      let fired = false
      // the signal lands between the workflow's decision to suspend and the commit of that decision
      const journal: DurableExecutionJournal.Journal = {
        ...inner,
        commit: (writes) =>
          Effect.gen(function*() {
            if (!fired && writes.some((write) => write._tag === "Suspend")) {
              fired = true
              yield* inner.signal({ workflow: "Order", executionId: "o1" }, "approval", JSON.stringify({ _tag: "Success", value: 9 }), 0)
            }
            return yield* inner.commit(writes)
          })
      }
      const engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(log)).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(9))
      expect(fired).toBe(true)
    }).pipe(Effect.scoped))

  // The step before the wait has its result pipelined: it commits with the suspension. A signal whose wake
  // claimed the execution while that commit was in flight raised the claim's epoch and fenced both: the
  // step ran again. The wake is claimed once the suspension's write has its answer.
  it.scoped("a signal while the suspension is being written does not run the step before it again", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const held = yield* Deferred.make<boolean>()
      const release = yield* Deferred.make<void>()
      // the first commit with the suspension waits for `release` (and says whether the step's result is in it)
      const journal: DurableExecutionJournal.Journal = {
        ...inner,
        commit: (writes) =>
          Effect.gen(function*() {
            const withSuspend = writes.some((write) => write._tag === "Suspend")
            const withStep = writes.some((write) => write._tag === "Append")
            if (withSuspend && (yield* Deferred.succeed(held, withStep))) yield* Deferred.await(release)
            return yield* inner.commit(writes)
          })
      }
      const engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(log)).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      expect(yield* Deferred.await(held)).toBe(true)
      expect(yield* engine.signal("o1", Approval, Exit.succeed(6))).toEqual({ stored: true })
      yield* Deferred.succeed(release, undefined)
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(6))
      expect(log.ids()).toEqual(["prepare", "finish"])
    }).pipe(Effect.scoped))

  it.scoped("wakes a workflow signalled just after its suspension committed", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      let engine: WorkflowEngine.WorkflowEngine<Order> | undefined
      let fired = false
      const journal: DurableExecutionJournal.Journal = {
        ...inner,
        commit: (writes) =>
          Effect.gen(function*() {
            const results = yield* inner.commit(writes)
            if (!fired && engine !== undefined && writes.some((write) => write._tag === "Suspend")) {
              fired = true
              yield* Effect.orDie(engine.signal("o1", Approval, Exit.succeed(5)))
            }
            return results
          })
      }
      engine = yield* WorkflowEngine.makeScoped(approvalWorkflow(log)).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(5))
      expect(fired).toBe(true)
    }).pipe(Effect.scoped))

  it.scoped("replays a received signal after a crash without waiting again", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const message = new Order({ orderId: "o1", amount: 1 })
      const workflow = approvalWorkflow(log)
      yield* runUntilCrash(journal, workflow, atEvent("StepCompleted", "finish"), (engine) =>
        Effect.gen(function*() {
          yield* engine.sendDiscard(message)
          yield* awaitStatus(engine, "o1", "Suspended")
          yield* engine.signal("o1", Approval, Exit.succeed(11))
          return yield* engine.result("o1")
        }))
      const second = yield* runUntilCrash(journal, workflow, undefined, (engine) => engine.send(message))
      expect(second).toEqual(Exit.succeed(11))
      expect(log.ids()).toEqual(["prepare", "finish", "finish"])
    }))

  it.scoped("a signal or cancel stored by another engine is not masked by a later local signal", () =>
    Effect.gen(function*() {
      const X = DurableDeferred.make("x", { success: Schema.Number })
      const Y = DurableDeferred.make("y", { success: Schema.Number })
      const journal = yield* freshJournal(journalCase)
      const gate = yield* Deferred.make<void>()
      const log = new RunLog()
      const workflow = Workflow.make(Order, () =>
        Effect.map(
          Effect.all([
            recorded(log, "work", 1, Schema.Number, { body: Deferred.await(gate) }),
            DurableDeferred.await(X),
            DurableDeferred.await(Y)
          ], { concurrency: "unbounded" }),
          ([a, b, c]) => a + b + c
        ))
      const engineOn = (identity: string) =>
        WorkflowEngine.make(workflow, { identity }).pipe(
          Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
        )
      const a = yield* engineOn("A")
      const b = yield* engineOn("B")
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* a.sendDiscard(new Order({ orderId: "o2", amount: 1 }))
      yield* eventually(() => log.count("work") === 2, "both running in A")
      // B stores x for o1 and a cancellation for o2; A holds both claims and is told nothing
      yield* b.signal("o1", X, Exit.succeed(10))
      expect(yield* b.cancel("o2")).toBe("cancelled")
      // A stores y for both: its own later change must not hide B's
      yield* a.signal("o1", Y, Exit.succeed(100))
      yield* a.signal("o2", Y, Exit.succeed(100))
      yield* Deferred.succeed(gate, undefined)
      expect(yield* a.result("o1")).toEqual(Exit.succeed(111))
      expect(yield* awaitStatus(a, "o2", "Cancelled")).toEqual({ _tag: "Cancelled" })
    }))
})
