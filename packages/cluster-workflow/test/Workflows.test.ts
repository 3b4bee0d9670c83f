import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableDeferred,
  DurableExecutionJournal,
  Workflow,
  WorkflowContext,
  WorkflowEngine,
  WorkflowError,
  WorkflowRuntime
} from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Option, Schedule, Schema, TestClock } from "effect"
import { describeJournals, freshJournal, start } from "./utils/journals.js"
import { atEvent, runUntilCrash } from "./utils/crash.js"
import { awaitStatus, eventually, eventuallyEffect } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { payloadHash } from "../src/internal/codec.js"

class Invoice extends Message.TaggedMessage<Invoice>()(
  "Invoice",
  Schema.String,
  Schema.String,
  { orderId: Schema.String },
  (_) => _.orderId
) {}

class Shipment extends Message.TaggedMessage<Shipment>()(
  "Shipment",
  Schema.String,
  Schema.String,
  { orderId: Schema.String },
  (_) => _.orderId
) {}

describeJournals("Retries", (journalCase) => {
  const flaky = (log: RunLog, failures: number, policy?: Activity.RetryInput) => {
    const activity = Activity.make("flaky", Schema.Number, Schema.String)(
      Effect.gen(function*() {
        const attempt = yield* Activity.currentAttempt
        log.runs.push({ id: yield* Activity.idempotencyKey, attempt })
        return attempt < failures ? yield* Effect.fail(`failure ${attempt}`) : attempt
      })
    )
    return Workflow.make(Order, () => policy === undefined ? activity : Activity.retry(activity, policy))
  }

  it.scoped("are off by default: a typed failure is final", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(flaky(log, 1))
      expect(yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))).toEqual(Exit.fail("failure 0"))
      expect(log.runs.length).toBe(1)
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("retry with a durable backoff; attempt and idempotency key are right on every attempt", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(flaky(log, 2, { times: 3, backoff: "1 minute" }))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      const status = yield* awaitStatus(engine, "o1", "Suspended")
      assert(status._tag === "Suspended")
      expect(status.reason).toBe("retry")
      yield* TestClock.adjust("1 minute")
      yield* eventually(() => log.runs.length === 2)
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* TestClock.adjust("119 seconds")
      expect(log.runs.length).toBe(2)
      yield* TestClock.adjust("1 second")
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(2))
      expect(log.runs).toEqual([0, 1, 2].map((attempt) => ({ id: "Order/o1/flaky", attempt })))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("stop after the policy's last retry with the last failure", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(flaky(log, 10, Schedule.recurs(2)))
      expect(yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))).toEqual(Exit.fail("failure 2"))
      expect(log.runs.map((run) => run.attempt)).toEqual([0, 1, 2])
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("continue from the recorded attempt and deadline after a crash", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const workflow = flaky(log, 2, { times: 5, backoff: "1 hour" })
      const message = new Order({ orderId: "o1", amount: 1 })
      // crash right after the first retry decision (delay 1 hour) was recorded
      const first = yield* runUntilCrash(journal, workflow, atEvent("StepRetrying", "flaky", "after"), (engine) =>
        engine.send(message))
      expect(first).toBe("crashed")
      yield* TestClock.adjust("30 minutes")
      const second = yield* Effect.fork(runUntilCrash(journal, workflow, undefined, (engine) => engine.send(message)))
      // the resumed execution waits for the recorded deadline (1 hour after the decision), not a fresh hour
      yield* eventuallyEffect(
        Effect.orDie(Effect.map(journal.get({ workflow: "Order", executionId: "o1" }), Option.map((row) => [row.status, row.wakeAt]))),
        (state) => Option.isSome(state) && state.value[0] === "suspended" && state.value[1] === 3_600_000
      )
      expect(log.runs.length).toBe(1)
      yield* TestClock.adjust("30 minutes")
      yield* eventually(() => log.runs.length === 2)
      // the second retry waits 2 hours (exponential), counted from the recorded decisions
      yield* TestClock.adjust("2 hours")
      expect(yield* second.await.pipe(Effect.flatten)).toEqual(Exit.succeed(2))
      expect(log.runs.map((run) => run.attempt)).toEqual([0, 1, 2])
    }))
})

describeJournals("Status and listing", (journalCase) => {
  it.scoped("report running, suspended, completed, failed, cancelled and unknown executions, listed in pages", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const gate = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          if (order.orderId === "running") yield* recorded(log, "wait", undefined, Schema.Void, { body: Deferred.await(gate) })
          if (order.orderId === "sleeping" || order.orderId === "cancelled") yield* Workflow.sleep("nap", "1 day")
          if (order.orderId === "failed") return yield* Effect.fail("bad order")
          return order.amount
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      for (const id of ["completed", "failed", "running", "sleeping", "cancelled"]) {
        yield* engine.sendDiscard(new Order({ orderId: id, amount: 1 }))
      }
      yield* awaitStatus(engine, "completed", "Completed")
      yield* awaitStatus(engine, "failed", "Failed")
      yield* awaitStatus(engine, "sleeping", "Suspended")
      yield* awaitStatus(engine, "cancelled", "Suspended")
      yield* engine.cancel("cancelled")
      yield* awaitStatus(engine, "cancelled", "Cancelled")
      expect(yield* engine.status("completed")).toEqual({ _tag: "Completed", exit: Exit.succeed(1) })
      expect(yield* engine.status("failed")).toEqual({ _tag: "Failed", exit: Exit.fail("bad order") })
      expect(yield* engine.status("running")).toEqual({ _tag: "Running" })
      expect(yield* engine.status("sleeping")).toEqual({
        _tag: "Suspended",
        reason: "timer",
        wakeAt: Option.some(new Date(86_400_000))
      })
      expect(yield* engine.status("nope")).toEqual({ _tag: "Unknown" })
      expect(yield* engine.poll("running")).toEqual(Option.none())
      expect(yield* engine.poll("completed")).toEqual(Option.some(Exit.succeed(1)))

      const all = yield* engine.list({ limit: 2 })
      expect(all.executions.map((e) => e.executionId)).toEqual(["cancelled", "completed"])
      assert(Option.isSome(all.next))
      const page2 = yield* engine.list({ limit: 2, after: all.next.value })
      expect(page2.executions.map((e) => e.executionId)).toEqual(["failed", "running"])
      const suspended = yield* engine.list({ status: "suspended" })
      expect(suspended.executions.map((e) => [e.executionId, e.suspendedOn])).toEqual([["sleeping", "timer"]])
      expect(suspended.next).toEqual(Option.none())
      yield* Deferred.succeed(gate, undefined)
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("a caller's wait limit does not cancel the workflow; the result can be fetched later", () =>
    Effect.gen(function*() {
      const workflow = Workflow.make(Order, (order) => Effect.as(Workflow.sleep("nap", "1 hour"), order.amount))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      const waited = yield* Effect.fork(engine.execute(new Order({ orderId: "o1", amount: 4 }), { timeout: "1 minute" }))
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* TestClock.adjust("1 minute")
      expect(yield* Effect.flip(waited.await.pipe(Effect.flatten))).toBeInstanceOf(WorkflowError.ResultTimeoutError)
      yield* TestClock.adjust("59 minutes")
      expect(yield* engine.result("o1")).toEqual(Exit.succeed(4))
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  it.scoped("deletes finished executions older than the retention age, and nothing else", () =>
    Effect.gen(function*() {
      const workflow = Workflow.make(Order, (order) =>
        order.orderId === "old" ? Effect.succeed(1) : Effect.as(Workflow.sleep("nap", "10 days"), 2))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.send(new Order({ orderId: "old", amount: 1 }))
      yield* engine.sendDiscard(new Order({ orderId: "sleeping", amount: 1 }))
      yield* awaitStatus(engine, "sleeping", "Suspended")
      yield* TestClock.adjust("8 days")
      expect(yield* engine.deleteCompleted("7 days")).toBe(1)
      expect(yield* engine.status("old")).toEqual({ _tag: "Unknown" })
      expect((yield* engine.status("sleeping"))._tag).toBe("Suspended")
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))
})

describeJournals("Child workflows", (journalCase) => {
  const parentAndChild = (log: RunLog) => {
    const child = Workflow.make(Shipment, (shipment) =>
      Effect.map(recorded(log, "label", `label-${shipment.orderId}`, Schema.String), (label) => label))
    const parent = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        yield* recorded(log, "charge", undefined, Schema.Void)
        const label = yield* Workflow.executeChild(new Shipment({ orderId: order.orderId }))
        yield* recorded(log, "notify", undefined, Schema.Void)
        return label.length
      }))
    return Workflow.union(parent, child)
  }

  it.scoped("starts a child with a derived id and awaits its result", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const engine = yield* WorkflowEngine.makeScoped(parentAndChild(log))
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(8)
      expect(log.ids()).toEqual(["charge", "label", "notify"])
      expect((yield* engine.status("o1/o1"))._tag).toBe("Completed")
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("does not start a second child after the parent crashes", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const message = new Order({ orderId: "o1", amount: 1 })
      const first = yield* runUntilCrash(journal, parentAndChild(log), atEvent("StepStarted", "notify"), (engine) =>
        engine.send(message))
      expect(first).toBe("crashed")
      const second = yield* runUntilCrash(journal, parentAndChild(log), undefined, (engine) => engine.send(message))
      expect(second).toEqual(Exit.succeed(8))
      expect(log.count("label")).toBe(1)
      expect(log.count("charge")).toBe(1)
    }))

  it.scoped("runs children concurrently with Effect.all and replays them identically", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const child = Workflow.make(Shipment, (shipment) => recorded(log, "label", shipment.orderId, Schema.String))
      const parent = Workflow.make(Order, () =>
        Effect.gen(function*() {
          const labels = yield* Effect.all(
            ["a", "b", "c"].map((id) => Workflow.executeChild(new Shipment({ orderId: id }))),
            { concurrency: "unbounded" }
          )
          yield* recorded(log, "done", undefined, Schema.Void)
          return labels.join("").length
        }))
      const message = new Order({ orderId: "p", amount: 1 })
      const first = yield* runUntilCrash(journal, Workflow.union(parent, child), atEvent("StepCompleted", "done"), (engine) =>
        engine.send(message))
      expect(first).toBe("crashed")
      const second = yield* runUntilCrash(journal, Workflow.union(parent, child), undefined, (engine) => engine.send(message))
      expect(second).toEqual(Exit.succeed(3))
      expect(log.count("label")).toBe(3)
    }))

  it.scoped("children of two types with one id are two steps; journals recorded with the bare child id still replay", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const shipment = Workflow.make(Shipment, (m) => recorded(log, "label", `label-${m.orderId}`, Schema.String))
      const invoice = Workflow.make(Invoice, (m) => recorded(log, "invoice", `invoice-${m.orderId}`, Schema.String))
      const both = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          const label = yield* Workflow.executeChild(new Shipment({ orderId: order.orderId }))
          const bill = yield* Workflow.executeChild(new Invoice({ orderId: order.orderId }))
          return (label + "|" + bill).length
        }))
      const engine = yield* WorkflowEngine.make(Workflow.union(both, shipment, invoice), { identity: "now" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      expect(yield* engine.execute(new Order({ orderId: "o1", amount: 1 }))).toBe("label-o1|invoice-o1".length)
      expect(log.ids()).toEqual(["label", "invoice"])

      // a parent journaled by an earlier release (child step id "o2", no type), stopped after its child's result
      const key = { workflow: "Order", executionId: "o2" }
      const payload = JSON.stringify({ _tag: "Order", orderId: "o2", amount: 1 })
      const [created] = yield* journal.commit([start(key, {
        payload,
        payloadHash: payloadHash(payload),
        version: "",
        owner: "earlier-release",
        claimUntil: 0,
        now: 0
      })])
      assert(created?._tag === "Created")
      const event = (sequence: number, kind: string, body: string) => ({
        sequence,
        kind,
        stepKind: "child",
        stepScope: "[]",
        stepId: "o2",
        attempt: 0,
        body
      })
      yield* journal.commit([{
        _tag: "Append",
        key,
        fence: { owner: "earlier-release", epoch: created.epoch },
        events: [event(0, "StepStarted", "{}"), event(1, "StepCompleted", JSON.stringify({ _tag: "Success", value: "old" }))],
        update: undefined,
        now: 0
      }])
      const legacy = Workflow.make(Order, (order) =>
        Effect.map(Workflow.executeChild(new Shipment({ orderId: order.orderId })), (label) => label.length))
      const later = yield* WorkflowEngine.make(Workflow.union(legacy, shipment), { identity: "later" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      expect(yield* later.result("o2")).toEqual(Exit.succeed("old".length))
      expect(log.ids()).toEqual(["label", "invoice"])
    }))
})

describeJournals("Versioning", (journalCase) => {
  const v1 = (log: RunLog) =>
    Workflow.make(Order, () =>
      Effect.gen(function*() {
        yield* recorded(log, "charge", undefined, Schema.Void)
        yield* DurableDeferred.await(DurableDeferred.make("continue"))
        yield* recorded(log, "email", undefined, Schema.Void)
        return 1
      }))
  const v2 = (log: RunLog) =>
    Workflow.make(Order, () =>
      Effect.gen(function*() {
        yield* recorded(log, "charge", undefined, Schema.Void)
        if (yield* Workflow.patched("sms-instead-of-email")) {
          yield* DurableDeferred.await(DurableDeferred.make("continue"))
          yield* recorded(log, "sms", undefined, Schema.Void)
          return 2
        }
        yield* DurableDeferred.await(DurableDeferred.make("continue"))
        yield* recorded(log, "email", undefined, Schema.Void)
        return 1
      }))

  it.scoped("old executions keep the old path, new ones take the new path", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const provide = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      // half-way on v1
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(v1(log))
        yield* engine.sendDiscard(new Order({ orderId: "old", amount: 1 }))
        yield* awaitStatus(engine, "old", "Suspended")
      }).pipe(Effect.scoped, provide)
      // finished on v2
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(v2(log))
        yield* engine.sendDiscard(new Order({ orderId: "new", amount: 1 }))
        yield* awaitStatus(engine, "new", "Suspended")
        const go = DurableDeferred.make("continue")
        yield* engine.signal("old", go, Exit.void)
        yield* engine.signal("new", go, Exit.void)
        expect(yield* engine.result("old")).toEqual(Exit.succeed(1))
        expect(yield* engine.result("new")).toEqual(Exit.succeed(2))
      }).pipe(Effect.scoped, provide)
      // two executions ran concurrently: compare the steps each took, not their interleaving
      expect(log.ids().sort()).toEqual(["charge", "charge", "email", "sms"])
    }))

  it.scoped("records the 2024 version argument at start and keeps it for the execution", () =>
    Effect.gen(function*() {
      const versions: Array<string> = []
      const workflow = Workflow.make(
        Order,
        (order) =>
          Effect.gen(function*() {
            const context = yield* WorkflowContext.WorkflowContext
            versions.push(context.version)
            return 1
          }),
        (order) => `v-${order.amount}`
      )
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.send(new Order({ orderId: "o1", amount: 3 }))
      const journal = yield* DurableExecutionJournal.DurableExecutionJournal
      const row = yield* journal.get({ workflow: "Order", executionId: "o1" })
      expect(Option.map(row, (r) => r.version)).toEqual(Option.some("v-3"))
      expect(versions).toEqual(["v-3"])
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))
})

describeJournals("Suspension (2024 yieldExecution)", (journalCase) => {
  it.scoped("suspends until the message is sent again", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      let ready = false
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "first", undefined, Schema.Void)
          if (!ready) return yield* Workflow.yieldExecution
          return 1
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      const status = yield* awaitStatus(engine, "o1", "Suspended")
      assert(status._tag === "Suspended")
      expect(status.reason).toBe("yield")
      ready = true
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(1)
      expect(log.count("first")).toBe(1)
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))

  // 2024 (api-2024.md §3.7): the attempt that yields ends interrupted; the caller sends again later.
  it.scoped("a send whose execution yields ends interrupted, and the next send resumes it", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      let ready = false
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          yield* recorded(log, "first", undefined, Schema.Void)
          if (!ready) return yield* Workflow.yieldExecution
          return 1
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      const first = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      assert(Exit.isFailure(first))
      expect(Cause.isInterruptedOnly(first.cause)).toBe(true)
      const status = yield* awaitStatus(engine, "o1", "Suspended")
      assert(status._tag === "Suspended")
      expect(status.reason).toBe("yield")
      // yielding again interrupts the resumed attempt too
      const second = yield* Effect.exit(WorkflowRuntime.attempt(workflow)(new Order({ orderId: "o1", amount: 1 })))
      expect(Exit.isInterrupted(second)).toBe(true)
      ready = true
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(1)
      expect(log.count("first")).toBe(1)
    }).pipe(Effect.provide(journalCase.layer), Effect.scoped))
})
