import {
  DurableDeferred,
  DurableExecutionJournal,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Option, Schema, TestClock } from "effect"
import { describeJournals, freshJournal } from "./utils/journals.js"
import { atEvent, runUntilCrash } from "./utils/crash.js"
import { awaitStatus, countingJournal, eventuallyEffect } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

const sleeper = (log: RunLog, duration: (order: Order) => string) =>
  Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      yield* recorded(log, "before", undefined, Schema.Void)
      yield* Workflow.sleep("wait", duration(order) as any)
      yield* recorded(log, `after-${order.orderId}`, undefined, Schema.Void)
      return order.amount
    }))

describeJournals("Durable timers", (journalCase) => {
  it.scoped("a 30-day sleep suspends the execution and completes when the clock is advanced, in one wake-up", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const { calls, journal } = countingJournal(yield* freshJournal(journalCase))
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(sleeper(log, () => "30 days"))
        yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 5 }))
        const status = yield* awaitStatus(engine, "o1", "Suspended")
        assert(status._tag === "Suspended")
        expect(status.reason).toBe("timer")
        expect(Option.map(status.wakeAt, (d) => d.getTime())).toEqual(Option.some(30 * 86_400_000))
        yield* eventuallyEffect(engine.liveExecutions, (n) => n === 0)
        const wakeUpsBefore = calls.dueTimers ?? 0
        yield* TestClock.adjust("30 days")
        expect(yield* engine.result("o1")).toEqual(Exit.succeed(5))
        expect(log.ids()).toEqual(["before", "after-o1"])
        // one timer armed for the deadline: a single look for due executions, not one per interval
        expect((calls.dueTimers ?? 0) - wakeUpsBefore).toBe(1)
      }).pipe(Effect.scoped, Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal))
    }))

  it.scoped("never fires early", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(sleeper(log, () => "1 hour"))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 5 }))
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* TestClock.adjust("3599999 millis")
      expect((yield* engine.status("o1"))._tag).toBe("Suspended")
      expect(log.count("after-o1")).toBe(0)
      yield* TestClock.adjust("1 millis")
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(5))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("re-arms for an earlier deadline added while a later one is armed", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(sleeper(log, (order) => order.orderId === "late" ? "10 days" : "1 day"))
      yield* engine.sendDiscard(new Order({ orderId: "late", amount: 1 }))
      yield* awaitStatus(engine, "late", "Suspended")
      yield* engine.sendDiscard(new Order({ orderId: "early", amount: 2 }))
      yield* awaitStatus(engine, "early", "Suspended")
      yield* TestClock.adjust("1 day")
      expect(yield* engine.result("early")).toEqual(Exit.succeed(2))
      expect((yield* engine.status("late"))._tag).toBe("Suspended")
      yield* TestClock.adjust("9 days")
      expect(yield* engine.result("late")).toEqual(Exit.succeed(1))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("wakes overdue timers after an engine restart, at once and in deadline order", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      // records the order in which the engine takes executions back
      const claimed: Array<string> = []
      const journal: DurableExecutionJournal.Journal = {
        ...inner,
        claim: (key, owner, now, until) =>
          Effect.tap(inner.claim(key, owner, now, until), (result) =>
            Effect.sync(() => {
              if (result._tag === "Claimed") claimed.push(key.executionId)
            }))
      }
      const workflow = sleeper(log, (order) => `${order.amount} days`)
      const provide = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(workflow)
        for (const [id, days] of [["c", 3], ["a", 1], ["b", 2]] as const) {
          yield* engine.sendDiscard(new Order({ orderId: id, amount: days }))
          yield* awaitStatus(engine, id, "Suspended")
        }
      }).pipe(Effect.scoped, provide)
      // the engine is gone; time passes
      yield* TestClock.adjust("5 days")
      expect(log.ids().filter((id) => id.startsWith("after"))).toEqual([])
      claimed.length = 0
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(workflow)
        for (const id of ["a", "b", "c"]) expect(yield* engine.result(id)).toEqual(Exit.succeed({ a: 1, b: 2, c: 3 }[id]))
      }).pipe(Effect.scoped, provide)
      expect(claimed).toEqual(["a", "b", "c"])
      expect(log.ids().filter((id) => id.startsWith("after")).sort()).toEqual(["after-a", "after-b", "after-c"])
    }))

  it.scoped("keeps the journaled deadline across a crash: the sleep is not restarted", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const workflow = sleeper(log, () => "1 day")
      const message = new Order({ orderId: "o1", amount: 3 })
      // crash right after the deadline was recorded
      const first = yield* runUntilCrash(journal, workflow, atEvent("StepStarted", "wait", "after"), (engine) =>
        engine.send(message))
      expect(first).toBe("crashed")
      yield* TestClock.adjust("12 hours")
      const second = yield* Effect.fork(runUntilCrash(journal, workflow, undefined, (engine) => engine.send(message)))
      yield* Effect.yieldNow()
      // 12 hours after the restart is 1 day after the sleep started: it completes then, not 1 day later
      yield* TestClock.adjust("12 hours")
      expect(yield* second.await.pipe(Effect.flatten)).toEqual(Exit.succeed(3))
      expect(log.ids()).toEqual(["before", "after-o1"])
    }))

  it.scoped("holds no execution in memory for thousands of sleeping workflows", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(sleeper(log, () => "1 day"))
      const n = 2000
      yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => new Order({ orderId: `o${i}`, amount: i })),
        (order) => engine.sendDiscard(order),
        { concurrency: 64 }
      )
      yield* eventuallyEffect(engine.liveExecutions, (live) => live === 0)
      expect((yield* engine.list({ status: "suspended", limit: n + 1 })).executions.length).toBe(n)
      yield* TestClock.adjust("1 day")
      const results = yield* Effect.forEach(Array.from({ length: n }, (_, i) => `o${i}`), (id) => engine.result(id))
      expect(results.every(Exit.isSuccess)).toBe(true)
      expect(log.count("before")).toBe(n)
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("Workflow.timeout fails with TimeoutException at the durable deadline", () =>
    Effect.gen(function*() {
      const workflow = Workflow.make(Order, () =>
        Workflow.timeout("limit", "2 hours")(Workflow.sleep("long", "1 day")).pipe(
          Effect.as(1),
          Effect.catchTag("TimeoutException", () => Effect.succeed(-1))
        ))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* TestClock.adjust("2 hours")
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(-1))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("Duration.infinity in Workflow.sleep and Workflow.timeout never fires, also after a replay", () =>
    Effect.gen(function*() {
      const Go = DurableDeferred.make("go", { success: Schema.Number })
      const journal = yield* freshJournal(journalCase)
      const workflow = Workflow.make(Order, (order) =>
        order.orderId === "t1"
          ? Workflow.timeout("forever", Duration.infinity)(DurableDeferred.await(Go)).pipe(
            Effect.catchTag("TimeoutException", () => Effect.succeed(-1))
          )
          : Effect.as(Workflow.sleep("forever", Duration.infinity), -2))
      const engine = yield* WorkflowEngine.make(workflow).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "t1", amount: 1 }))
      yield* engine.sendDiscard(new Order({ orderId: "s1", amount: 1 }))
      expect(yield* awaitStatus(engine, "t1", "Suspended")).toMatchObject({ reason: "signal:go,timer", wakeAt: Option.none() })
      expect(yield* awaitStatus(engine, "s1", "Suspended")).toMatchObject({ reason: "timer", wakeAt: Option.none() })
      const started = (yield* journal.events({ workflow: "Order", executionId: "s1" }, 0))[0]!
      expect(JSON.parse(started.body)).toEqual({ wakeAt: null })
      yield* TestClock.adjust(Duration.days(365 * 100))
      expect((yield* engine.status("t1"))._tag).toBe("Suspended")
      expect((yield* engine.status("s1"))._tag).toBe("Suspended")
      // the signal wakes t1, which replays the timer's StepStarted: it still never fires
      yield* engine.signal("t1", Go, Exit.succeed(5))
      expect(yield* engine.result("t1")).toEqual(Exit.succeed(5))
      // s1, resumed by hand, replays its never-ending sleep and suspends again
      yield* engine.resume("s1")
      expect(yield* awaitStatus(engine, "s1", "Suspended")).toMatchObject({ reason: "timer", wakeAt: Option.none() })
      yield* TestClock.adjust(Duration.days(1))
      expect((yield* engine.status("s1"))._tag).toBe("Suspended")
    }))
})
