/**
 * The interruption table of docs/cancellation.md: for each way a running workflow can be interrupted
 * (caller interrupt, engine scope close, cancel, race loser, Workflow.timeout), what is recorded, whether
 * the running activity body finishes, and what compensates. Rows already covered elsewhere cite those
 * tests; this file holds the rest.
 */
import {
  Activity,
  DurableExecutionJournal,
  Workflow,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Option, Schema, TestClock } from "effect"
import { atEvent, runUntilCrash } from "./utils/crash.js"
import { eventually } from "./utils/engine.js"
import { Order, RunLog } from "./utils/fixtures.js"
import { describeJournals, freshJournal, type JournalCase } from "./utils/journals.js"

/** Builds a case's journal in the current scope (for tests that run several engines on it). */
const buildJournal = (journalCase: JournalCase) =>
  Effect.map(Layer.build(journalCase.layer), (context) => Context.get(context, DurableExecutionJournal.DurableExecutionJournal))

const orderKey = (executionId: string) => ({ workflow: "Order", executionId })

/** `kind:stepKind:stepId` of every event of an execution. */
const eventsOf = (journal: DurableExecutionJournal.Journal, executionId: string) =>
  Effect.map(
    Effect.orDie(journal.events(orderKey(executionId), 0)),
    (events) => events.map((e) => e.stepKind === "workflow" ? e.kind : `${e.kind}:${e.stepKind}:${e.stepId}`)
  )

/** "charge" registers a refund (saga). */
const charge = (log: RunLog) =>
  Activity.make("charge", Schema.String, Schema.String)(
    Effect.sync(() => {
      log.runs.push({ id: "charge", attempt: 0 })
      return "ch"
    })
  ).pipe(Workflow.withCompensation((id) => Effect.sync(() => log.runs.push({ id: `refund:${id}`, attempt: 0 }))))

/**
 * An activity whose body blocks on `gate` on its first attempt (attempt 0) and returns at once on later
 * ones; it logs its runs and, under `interrupted:<id>`, each run that was interrupted (its finalizer).
 */
const blocking = (log: RunLog, id: string, gate: Deferred.Deferred<void>, value = 1) =>
  Activity.make(id, Schema.Number, Schema.String)(
    Effect.gen(function*() {
      const attempt = yield* Activity.currentAttempt
      log.runs.push({ id, attempt })
      if (attempt === 0) yield* Deferred.await(gate)
      return value
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => log.runs.push({ id: `interrupted:${id}`, attempt: 0 }))))
  )

describeJournals("Interruption", (journalCase) => {
  it.scoped("engine scope close: the running body is interrupted, nothing is recorded, nothing compensates; the next engine re-runs it with the next attempt", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* buildJournal(journalCase)
      const never = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* charge(log)
          return yield* blocking(log, "slow", never, 7)
        }))
      const provide = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(workflow)
        yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
        yield* eventually(() => log.count("slow") === 1, "slow started")
      }).pipe(Effect.scoped, provide)
      // the body was interrupted (its finalizer ran), no compensation ran
      expect(log.ids()).toEqual(["charge", "slow", "interrupted:slow"])
      // no result, no completion, no cancellation recorded: the attempt marker is the last event
      expect(yield* eventsOf(journal, "o1")).toEqual([
        "StepStarted:activity:charge",
        "StepCompleted:activity:charge",
        "StepStarted:activity:slow"
      ])
      const row = Option.getOrThrow(yield* Effect.orDie(journal.get(orderKey("o1"))))
      expect(row.status).toBe("running")
      expect(row.result).toBe(null)
      // a new engine in this process (same identity) resumes it at start, with the next attempt
      const result = yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(workflow)
        return yield* engine.result("o1")
      }).pipe(Effect.scoped, provide)
      expect(result).toEqual(Exit.succeed(7))
      expect(log.runs).toEqual([
        { id: "charge", attempt: 0 },
        { id: "slow", attempt: 0 },
        { id: "interrupted:slow", attempt: 0 },
        { id: "slow", attempt: 1 }
      ])
    }))

  it.scoped("engine scope close: the engine gives its claims up, so an engine with another identity takes the execution over at once", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* buildJournal(journalCase)
      const never = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () => blocking(log, "slow", never, 7))
      const provide = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.make(workflow, { identity: "engine-a", claimLease: "30 seconds" })
        yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
        yield* eventually(() => log.count("slow") === 1, "slow started")
      }).pipe(Effect.scoped, provide)
      // a graceful shutdown released the claim (issue 9 #4): still running, unclaimed, same epoch
      const row = yield* journal.get({ workflow: "Order", executionId: "o1" })
      expect(Option.map(row, (r) => [r.status, r.claimOwner, r.claimEpoch])).toEqual(Option.some(["running", null, 1]))
      yield* Effect.gen(function*() {
        // engine-b resumes it at start, long before engine-a's 30 s lease would have ended
        const engine = yield* WorkflowEngine.make(workflow, { identity: "engine-b" })
        expect(yield* engine.result("o1")).toEqual(Exit.succeed(7))
      }).pipe(Effect.scoped, provide)
      expect(log.runs.filter((run) => run.id === "slow").map((run) => run.attempt)).toEqual([0, 1])
    }))

  it.scoped("cancel: the running body is interrupted and never recorded; CancelRequested follows its attempt marker; completed activities compensate", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* buildJournal(journalCase)
      const never = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* charge(log)
          return yield* blocking(log, "slow", never)
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => log.count("slow") === 1, "slow started")
      expect(yield* engine.cancel("o1")).toBe("cancelled")
      expect(yield* Effect.flip(engine.result("o1"))).toBeInstanceOf(WorkflowError.WorkflowCancelledError)
      expect(log.ids()).toEqual(["charge", "slow", "interrupted:slow", "refund:ch"])
      expect(yield* eventsOf(journal, "o1")).toEqual([
        "StepStarted:activity:charge",
        "StepCompleted:activity:charge",
        "StepStarted:activity:slow",
        "CancelRequested",
        "StepStarted:compensation:activity:charge",
        "StepCompleted:compensation:activity:charge",
        "ExecutionCompleted"
      ])
      expect((yield* engine.status("o1"))._tag).toBe("Cancelled")
    }))

  it.scoped("race loser: its body is interrupted, its attempt stays recorded without a result, and it is never compensated", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* buildJournal(journalCase)
      const never = yield* Deferred.make<void>()
      const compensated = (id: string) =>
        Workflow.withCompensation((_: number) => Effect.sync(() => log.runs.push({ id: `undo:${id}`, attempt: 0 })))
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* Effect.race(
            blocking(log, "loser", never).pipe(compensated("loser")),
            Activity.make("winner", Schema.Number, Schema.String)(Effect.succeed(2)).pipe(compensated("winner"))
          )
          return yield* Effect.fail("later failure")
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      expect(yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))).toEqual(Exit.fail("later failure"))
      expect(log.ids()).toEqual(["loser", "interrupted:loser", "undo:winner"])
      const events = yield* eventsOf(journal, "o1")
      expect(events).toContain("StepStarted:activity:loser")
      expect(events).not.toContain("StepCompleted:activity:loser")
      expect(events).not.toContain("StepStarted:compensation:activity:loser")
    }))

  it.scoped("race loser: not started again on replay when the winner's branch takes many scheduler rounds to finish", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      // each run is its own "process" with its own connections (a crash closes them, as a real one would)
      const journal = yield* freshJournal(journalCase)
      const gate = yield* Deferred.make<void>()
      // after its recorded result, the winner's branch yields 50 times before the race ends
      const winner = Activity.make("winner", Schema.Number, Schema.String)(Effect.succeed(2)).pipe(
        Effect.zipLeft(Effect.forEach(Array.from({ length: 50 }), () => Effect.yieldNow(), { discard: true }))
      )
      const workflow = Workflow.make(Order, () => Effect.race(blocking(log, "loser", gate), winner))
      // crash right after the winner's completion is committed: the loser's abandonment is not journaled
      const first = yield* runUntilCrash(
        journal,
        workflow,
        atEvent("StepCompleted", "winner", "after"),
        (engine) => engine.send(new Order({ orderId: "o1", amount: 1 }))
      )
      expect(first).toBe("crashed")
      // a loser run again would return at once (attempt 1)
      const second = yield* runUntilCrash(journal, workflow, undefined, (engine) => engine.result("o1"))
      expect(second).toEqual(Exit.succeed(Exit.succeed(2)))
      expect(log.ids().filter((id) => id === "loser")).toEqual(["loser"])
    }))

  it.scoped("Workflow.timeout: at the deadline the timer's completion is recorded, the running body is interrupted, and completed activities compensate when the workflow fails", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* buildJournal(journalCase)
      const never = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* charge(log)
          return yield* Workflow.timeout("limit", "1 hour")(blocking(log, "slow", never))
        }).pipe(Effect.catchTag("TimeoutException", () => Effect.fail("timed out"))))
      // A lease longer than the clock jump below: a TestClock jump past the lease looks like a frozen
      // process to the lease watchdog (issue 9 #11), which would stop the execution mid-compensation.
      const engine = yield* WorkflowEngine.make(workflow, { claimLease: "1 day" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => log.count("slow") === 1, "slow started")
      yield* TestClock.adjust("1 hour")
      expect(yield* engine.result("o1")).toEqual(Exit.fail("timed out"))
      expect(log.ids()).toEqual(["charge", "slow", "interrupted:slow", "refund:ch"])
      const events = yield* eventsOf(journal, "o1")
      expect(events.slice(0, 5)).toEqual([
        "StepStarted:activity:charge",
        "StepCompleted:activity:charge",
        "StepStarted:activity:slow",
        "StepStarted:timer:limit",
        "StepCompleted:timer:limit"
      ])
      expect(events).not.toContain("StepCompleted:activity:slow")
    }))

  it.scoped("Workflow.timeout: after a crash, replay sees the recorded deadline and does not re-run the interrupted body", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      // each run is its own "process" with its own connections (a crash closes them, as a real one would)
      const journal = yield* freshJournal(journalCase)
      const gate = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* charge(log)
          return yield* Workflow.timeout("limit", "1 hour")(blocking(log, "slow", gate))
        }).pipe(Effect.catchTag("TimeoutException", () => Effect.fail("timed out"))))
      const message = new Order({ orderId: "o1", amount: 1 })
      // crash right after the timer's completion is committed, before anything else
      const first = yield* runUntilCrash(journal, workflow, atEvent("StepCompleted", "limit", "after"), (engine, restore) =>
        Effect.gen(function*() {
          yield* engine.sendDiscard(message)
          yield* eventually(() => log.count("slow") === 1, "slow started")
          yield* restore(TestClock.adjust("1 hour"))
          return yield* engine.result("o1")
        }))
      expect(first).toBe("crashed")
      // "slow" would now finish at once if it ran again
      yield* Deferred.succeed(gate, undefined)
      const second = yield* runUntilCrash(journal, workflow, undefined, (engine) => engine.result("o1"))
      expect(second).toEqual(Exit.succeed(Exit.fail("timed out")))
      expect(log.ids().filter((id) => id === "slow" || id === "refund:ch")).toEqual(["slow", "refund:ch"])
    }))
})
