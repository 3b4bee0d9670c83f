import {
  DurableDeferred,
  Workflow,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Option, Schema } from "effect"
import { describeJournals, freshJournal } from "./utils/journals.js"
import { atEvent, runUntilCrash } from "./utils/crash.js"
import { awaitStatus, eventually } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

/** charge and reserve register compensations; ship fails (or waits for a signal, to be cancelled). */
const saga = (log: RunLog, options: { readonly shipFails: boolean; readonly waitBeforeShip?: boolean }) =>
  Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      const chargeId = yield* recorded(log, "charge", `ch-${order.orderId}`, Schema.String).pipe(
        Workflow.withCompensation((id) => Effect.sync(() => log.runs.push({ id: `refund:${id}`, attempt: 0 })))
      )
      yield* recorded(log, "reserve", "stock-1", Schema.String).pipe(
        Workflow.withCompensation((id) => Effect.sync(() => log.runs.push({ id: `release:${id}`, attempt: 0 })))
      )
      if (options.waitBeforeShip) yield* DurableDeferred.await(DurableDeferred.make("go"))
      yield* recorded(log, "ship", undefined, Schema.Void, options.shipFails ? { fail: "no carrier" } : undefined)
      return chargeId.length
    }))

describeJournals("Sagas", (journalCase) => {
  it.scoped("runs the compensations of completed activities in reverse order when the workflow fails", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(saga(log, { shipFails: true }))
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      expect(exit).toEqual(Exit.fail("no carrier"))
      expect(log.ids()).toEqual(["charge", "reserve", "ship", "release:stock-1", "refund:ch-o1"])
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("runs no compensation when the workflow succeeds", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(saga(log, { shipFails: false }))
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(5)
      expect(log.ids()).toEqual(["charge", "reserve", "ship"])
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("resumes compensating after a crash and never repeats a recorded compensation", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const message = new Order({ orderId: "o1", amount: 1 })
      // crash once the first compensation (release) is recorded, before the refund
      const first = yield* runUntilCrash(
        journal,
        saga(log, { shipFails: true }),
        atEvent("StepCompleted", "activity:reserve", "after"),
        (engine) => engine.send(message)
      )
      expect(first).toBe("crashed")
      expect(log.ids()).toEqual(["charge", "reserve", "ship", "release:stock-1"])
      const second = yield* runUntilCrash(journal, saga(log, { shipFails: true }), undefined, (engine) => engine.send(message))
      expect(second).toEqual(Exit.fail("no carrier"))
      expect(log.ids()).toEqual(["charge", "reserve", "ship", "release:stock-1", "refund:ch-o1"])
    }))
})

describeJournals("Cancellation", (journalCase) => {
  it.scoped("cancels a suspended execution: journaled, compensated, cancelled for every caller", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(saga(log, { shipFails: false, waitBeforeShip: true }))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(engine, "o1", "Suspended")
      expect(yield* engine.cancel("o1")).toBe("cancelled")
      const error = yield* Effect.flip(engine.result("o1"))
      expect(error).toBeInstanceOf(WorkflowError.WorkflowCancelledError)
      expect(log.ids()).toEqual(["charge", "reserve", "release:stock-1", "refund:ch-o1"])
      expect((yield* engine.status("o1"))._tag).toBe("Cancelled")
      // the 2024 signature: a defect with a tagged class
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      assert(Exit.isFailure(exit))
      const defect = Cause.dieOption(exit.cause)
      assert(Option.isSome(defect))
      expect(WorkflowError.isWorkflowCancelledError(defect.value)).toBe(true)
      expect(yield* engine.cancel("o1")).toBe("already-finished")
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("interrupts a running activity and compensates the completed ones", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const never = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "charge", "ch", Schema.String).pipe(
            Workflow.withCompensation((id) => Effect.sync(() => log.runs.push({ id: `refund:${id}`, attempt: 0 })))
          )
          yield* recorded(log, "slow", undefined, Schema.Void, { body: Deferred.await(never) })
          return 1
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => log.count("slow") === 1)
      expect(yield* engine.cancel("o1")).toBe("cancelled")
      expect(yield* Effect.flip(engine.result("o1"))).toBeInstanceOf(WorkflowError.WorkflowCancelledError)
      expect(log.ids()).toEqual(["charge", "slow", "refund:ch"])
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("a cancellation recorded before a crash is honoured on replay, compensating once", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const workflow = saga(log, { shipFails: false, waitBeforeShip: true })
      const first = yield* runUntilCrash(journal, workflow, atEvent("StepCompleted", "activity:charge", "before"), (engine) =>
        Effect.gen(function*() {
          yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
          yield* awaitStatus(engine, "o1", "Suspended")
          yield* engine.cancel("o1")
          return yield* Effect.flip(engine.result("o1"))
        }))
      expect(first).toBe("crashed")
      expect(log.ids()).toEqual(["charge", "reserve", "release:stock-1", "refund:ch-o1"])
      const second = yield* runUntilCrash(journal, workflow, undefined, (engine) => Effect.flip(engine.result("o1")))
      assert(second !== "crashed" && Exit.isSuccess(second))
      expect(second.value).toBeInstanceOf(WorkflowError.WorkflowCancelledError)
      // the refund was not recorded before the crash, so it ran again (at least once); release did not
      expect(log.ids()).toEqual(["charge", "reserve", "release:stock-1", "refund:ch-o1", "refund:ch-o1"])
    }))

  it.scoped("does nothing to a finished execution, and refuses an unknown one", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(saga(log, { shipFails: false }))
      yield* engine.send(new Order({ orderId: "o1", amount: 1 }))
      expect(yield* engine.cancel("o1")).toBe("already-finished")
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(5))
      expect(yield* Effect.flip(engine.cancel("nope"))).toBeInstanceOf(WorkflowError.ExecutionNotFoundError)
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))
})
