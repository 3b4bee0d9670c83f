import {
  Activity,
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowContext,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Schema } from "effect"
import { describeJournals, freshJournal } from "./utils/journals.js"
import { atEvent, runUntilCrash } from "./utils/crash.js"
import { Order, recorded, Refund, RunLog, threeSteps } from "./utils/fixtures.js"

describeJournals("WorkflowEngine", (journalCase) => {
  it.scoped("runs each activity once and returns the workflow's result", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(threeSteps(log))
      const result = yield* engine.send(new Order({ orderId: "o1", amount: 3 }))
      expect(result).toBe(307)
      expect(log.ids()).toEqual(["amount-o1", "charge", "ship"])
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("returns an activity's typed failure as the workflow's failure", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "charge", undefined, Schema.Void, { fail: "card declined" })
          return 1
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      expect(exit).toEqual(Exit.fail("card declined"))
      // a recorded typed failure is final: sending again runs nothing
      const again = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      expect(again).toEqual(Exit.fail("card declined"))
      expect(log.count("charge")).toBe(1)
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("returns the stored result of a completed execution without running anything", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(threeSteps(log))
      const order = new Order({ orderId: "o1", amount: 3 })
      expect(yield* engine.send(order)).toBe(307)
      expect(yield* engine.send(order)).toBe(307)
      expect(log.runs.length).toBe(3)
      const fresh = yield* WorkflowEngine.makeScoped(threeSteps(log))
      expect(yield* fresh.send(order)).toBe(307)
      expect(log.runs.length).toBe(3)
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("runs concurrent sends of one id once", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(threeSteps(log))
      const order = new Order({ orderId: "o1", amount: 3 })
      const results = yield* Effect.all(Array.from({ length: 10 }, () => engine.send(order)), {
        concurrency: "unbounded"
      })
      expect(results).toEqual(Array.from({ length: 10 }, () => 307))
      expect(log.ids()).toEqual(["amount-o1", "charge", "ship"])
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("refuses the same id with a different payload", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(threeSteps(log))
      yield* engine.send(new Order({ orderId: "o1", amount: 3 }))
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 4 })))
      assert(Exit.isFailure(exit))
      const defect = Cause.dieOption(exit.cause)
      assert(Option.isSome(defect))
      expect(WorkflowError.isPayloadMismatchError(defect.value)).toBe(true)
      const typed = yield* Effect.flip(engine.execute(new Order({ orderId: "o1", amount: 4 })))
      expect(typed).toBeInstanceOf(WorkflowError.PayloadMismatchError)
      expect(log.runs.length).toBe(3)
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("does not re-run a completed activity after a crash, and re-runs the one cut off", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const order = new Order({ orderId: "o1", amount: 3 })
      // crash once "charge" has run but before its result is recorded
      const first = yield* runUntilCrash(
        inner,
        threeSteps(log),
        atEvent("StepCompleted", "charge"),
        (engine) => engine.send(order)
      )
      expect(first).toBe("crashed")
      expect(log.runs).toEqual([{ id: "amount-o1", attempt: 0 }, { id: "charge", attempt: 0 }])
      const second = yield* runUntilCrash(inner, threeSteps(log), undefined, (engine) => engine.send(order))
      expect(second).toEqual(Exit.succeed(307))
      expect(log.runs).toEqual([
        { id: "amount-o1", attempt: 0 },
        { id: "charge", attempt: 0 },
        { id: "charge", attempt: 1 },
        { id: "ship", attempt: 0 }
      ])
    }))

  it.scoped("resumes an unfinished execution at engine start, without a new send", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const order = new Order({ orderId: "o1", amount: 3 })
      yield* runUntilCrash(inner, threeSteps(log), atEvent("StepStarted", "ship", "after"), (engine) => engine.send(order))
      expect(log.ids()).toEqual(["amount-o1", "charge"])
      const resumed = yield* runUntilCrash(inner, threeSteps(log), undefined, (engine) =>
        engine.result("o1"))
      assert(resumed !== "crashed")
      expect(resumed).toEqual(Exit.succeed(Exit.succeed(307)))
      expect(log.ids()).toEqual(["amount-o1", "charge", "ship"])
    }))

  it.scoped("keeps running an execution whose caller was interrupted", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const log = new RunLog()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "slow", undefined, Schema.Void, { body: Deferred.await(release) })
          return yield* recorded(log, "after", 5, Schema.Number)
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      const caller = yield* Effect.fork(engine.send(new Order({ orderId: "o1", amount: 1 })))
      yield* Effect.yieldNow()
      while (log.count("slow") === 0) yield* Effect.yieldNow()
      yield* Fiber.interrupt(caller)
      yield* Deferred.succeed(release, undefined)
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(5))
      expect(log.ids()).toEqual(["slow", "after"])
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped))

  it.scoped("replays Effect.race the same way and does not re-run the loser", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const slowGate = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          const winner = yield* Effect.race(
            recorded(log, "slow", 1, Schema.Number, { body: Deferred.await(slowGate) }),
            recorded(log, "fast", 2, Schema.Number)
          )
          const next = yield* recorded(log, "next", 10, Schema.Number)
          return winner + next
        }))
      const order = new Order({ orderId: "o1", amount: 1 })
      // crash when "next" is about to be recorded: the race is over, "slow" was interrupted
      const first = yield* runUntilCrash(inner, workflow, atEvent("StepCompleted", "next"), (engine) => engine.send(order))
      expect(first).toBe("crashed")
      expect(log.ids().sort()).toEqual(["fast", "next", "slow"])
      // on replay "slow" would finish at once if it ran: it must not run again
      yield* Deferred.succeed(slowGate, undefined)
      const second = yield* runUntilCrash(inner, workflow, undefined, (engine) => engine.send(order))
      expect(second).toEqual(Exit.succeed(12))
      expect(log.count("slow")).toBe(1)
      expect(log.count("fast")).toBe(1)
      expect(log.count("next")).toBe(2)
    }))

  it.scoped("replays Effect.all with concurrency in the recorded completion order", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const gates = yield* Effect.all([Deferred.make<void>(), Deferred.make<void>(), Deferred.make<void>()])
      const order: Array<string> = []
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          const values = yield* Effect.all(
            ["a", "b", "c"].map((id, i) =>
              Effect.tap(
                recorded(log, id, i + 1, Schema.Number, { body: Deferred.await(gates[i]!) }),
                () => Effect.sync(() => order.push(id))
              )
            ),
            { concurrency: "unbounded" }
          )
          yield* recorded(log, "sum", undefined, Schema.Void)
          return values.reduce((a, b) => a + b, 0)
        }))
      const message = new Order({ orderId: "o1", amount: 1 })
      const run = yield* Effect.fork(
        runUntilCrash(inner, workflow, atEvent("StepCompleted", "sum"), (engine) => engine.send(message))
      )
      // complete in the order c, a, b
      for (const i of [2, 0, 1]) {
        while (log.count(["a", "b", "c"][i]!) === 0) yield* Effect.yieldNow()
        yield* Deferred.succeed(gates[i]!, undefined)
        while (order.length < [2, 0, 1].indexOf(i) + 1) yield* Effect.yieldNow()
      }
      expect(yield* Fiber.join(run)).toBe("crashed")
      expect(order).toEqual(["c", "a", "b"])
      order.length = 0
      const second = yield* runUntilCrash(inner, workflow, undefined, (engine) => engine.send(message))
      expect(second).toEqual(Exit.succeed(6))
      expect(order).toEqual(["c", "a", "b"])
      expect(log.count("a") + log.count("b") + log.count("c")).toBe(3)
    }))

  it.scoped("stops with a non-determinism error naming both steps when the code asks for another step", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const message = new Order({ orderId: "o1", amount: 1 })
      yield* runUntilCrash(inner, threeSteps(log), atEvent("StepCompleted", "ship"), (engine) => engine.send(message))
      const changed = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "amount-o1", 1, Schema.Number)
          yield* recorded(log, "refund", undefined, Schema.Void)
          return 0
        }))
      const exit = yield* runUntilCrash(inner, changed, undefined, (engine) => engine.send(message))
      assert(exit !== "crashed" && Exit.isFailure(exit))
      const defect = Cause.dieOption(exit.cause)
      assert(Option.isSome(defect) && WorkflowError.isNonDeterminismError(defect.value))
      expect(defect.value.expected).toContain("charge")
      expect(defect.value.actual).toContain("refund")
      expect(log.count("refund")).toBe(0)
      // typed on the new API, and recorded: the journal's events are untouched
      const typed = yield* runUntilCrash(inner, changed, undefined, (engine) => Effect.flip(engine.result("o1")))
      assert(typed !== "crashed" && Exit.isSuccess(typed))
      expect(typed.value._tag).toBe("NonDeterminismError")
      const events = yield* inner.events({ workflow: "Order", executionId: "o1" }, 0)
      expect(events.map((e) => `${e.kind}:${e.stepId}`)).toEqual([
        "StepStarted:amount-o1",
        "StepCompleted:amount-o1",
        "StepStarted:charge",
        "StepCompleted:charge",
        "StepStarted:ship"
      ])
    }))

  it.scoped("dispatches Workflow.union by message type", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const refunds = Workflow.make(Refund, (refund) => Effect.succeed(`refunded ${refund.refundId}`))
      const engine = yield* WorkflowEngine.makeScoped(Workflow.union(threeSteps(log), refunds))
      expect(yield* engine.send(new Refund({ refundId: "r1" }))).toBe("refunded r1")
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 2 }))).toBe(207)
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("runs one activity id once per appendToPersistenceId suffix, and returns the recorded result when asked again", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          let total = 0
          for (const item of ["x", "y", "z"]) {
            total += yield* WorkflowContext.appendToPersistenceId(item)(recorded(log, "price", item.charCodeAt(0), Schema.Number))
          }
          // asking again for a completed id returns its recorded result
          total += yield* WorkflowContext.appendToPersistenceId("x")(recorded(log, "price", -1, Schema.Number))
          return total
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(120 + 121 + 122 + 120)
      expect(log.count("price")).toBe(3)
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("gives activities their attempt and a stable idempotency key", () =>
    Effect.gen(function*() {
      const seen: Array<[string, number, string]> = []
      const workflow = Workflow.make(Order, (order) =>
        Activity.make("pay", Schema.Number, Schema.String)(
          Effect.gen(function*() {
            seen.push([yield* Activity.idempotencyKey, yield* Activity.currentAttempt, yield* Activity.persistenceId])
            return order.amount
          })
        ))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.send(new Order({ orderId: "o/1", amount: 1 }))
      expect(seen).toEqual([["Order/o%2F1/pay", 0, "Order/o%2F1/pay"]])
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("records a defect as an encoded defect that replays as a defect", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const workflow = Workflow.make(Order, () =>
        recorded(log, "boom", 1, Schema.Number, { body: Effect.die(new RangeError("out of range")) }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      assert(Exit.isFailure(exit))
      const defect = Cause.dieOption(exit.cause)
      assert(Option.isSome(defect) && defect.value instanceof Error)
      expect(defect.value.name).toBe("RangeError")
      expect(defect.value.message).toBe("out of range")
      const again = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      expect(Cause.dieOption((again as Exit.Failure<any, any>).cause).pipe(Option.map((e: any) => e.message))).toEqual(
        Option.some("out of range")
      )
      expect(log.count("boom")).toBe(1)
    }).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)))

  it.scoped("resume(id) runs the execution on the calling engine, even while an engine with other code is live", () =>
    Effect.gen(function*() {
      // v1 yields for ever; its engine stays live and hears of every change (NOTIFY, data_version, in process)
      const v1 = Workflow.make(Order, () => Workflow.yieldExecution)
      const engine1 = yield* WorkflowEngine.makeScoped(v1)
      yield* engine1.sendDiscard(new Order({ orderId: "y1", amount: 1 }))
      while ((yield* engine1.status("y1"))._tag !== "Suspended") yield* Effect.yieldNow()
      const v2 = Workflow.make(Order, (order) => Effect.succeed(order.amount + 1))
      const engine2 = yield* WorkflowEngine.make(v2, { identity: "v2" })
      yield* engine2.resume("y1")
      // run by v1's engine it would have yielded again, and this would wait for ever
      expect(yield* engine2.result("y1")).toEqual(Exit.succeed(2))
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("fails an execution whose journal entry no longer decodes, naming the execution and the step", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* DurableExecutionJournal.DurableExecutionJournal
      const v1 = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "label", "text", Schema.String)
          return yield* Workflow.yieldExecution
        }))
      // v1 records both executions, which suspend; then v1's engine stops (a deploy: v2 replaces v1; a live
      // v1 engine would also take the resumed executions when it hears of them, and run them by v1's code)
      yield* Effect.scoped(Effect.gen(function*() {
        const engine1 = yield* WorkflowEngine.makeScoped(v1)
        yield* engine1.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
        yield* engine1.sendDiscard(new Order({ orderId: "o2", amount: 1 }))
        while ((yield* engine1.status("o1"))._tag !== "Suspended") yield* Effect.yieldNow()
        while ((yield* engine1.status("o2"))._tag !== "Suspended") yield* Effect.yieldNow()
      }))
      // v2 expects a number where v1 recorded a string
      const v2 = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          if (order.orderId === "o2") {
            yield* recorded(log, "label", "text", Schema.String)
            return 0
          }
          yield* recorded(log, "label", 1, Schema.Number)
          return 1
        }))
      const engine2 = yield* WorkflowEngine.make(v2, { identity: "v2" })
      yield* engine2.resume("o1")
      const error = yield* Effect.flip(engine2.result("o1"))
      assert(error._tag === "JournalDecodeError")
      expect(error.executionId).toBe("o1")
      expect(error.step).toContain("label")
      yield* engine2.resume("o2")
      expect(yield* engine2.result("o2")).toEqual(Exit.succeed(0))
      expect((yield* inner.events({ workflow: "Order", executionId: "o1" }, 0)).length).toBe(2)
    }).pipe(Effect.provide(journalCase.layer)))
})
