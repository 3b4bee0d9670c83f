/**
 * A graceful shutdown with `shutdownGracePeriod`, at its edges: the results of the activities that finish
 * during the grace period are committed as the engine's other writes are (retried through a passing
 * journal failure), and a step that needs the engine while it stops (a child's start) waits for the
 * execution's next run instead of stopping the execution with the step before it uncommitted.
 */
import { Activity, DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Logger, LogLevel, Option, Schedule, Schema, Scope } from "effect"
import { awaitStatus, eventually } from "./utils/engine.js"
import type { Sharding } from "@effect-cluster/cluster"
import { Message } from "@effect-cluster/cluster"
import { clusterDatabases, makeEngineCluster, PodName, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { chargeThenShip, closingWhileRunning, collecting, resumedByB, stayingAndLeaving } from "./utils/grace.js"
import { describeJournals, journalCases, sharedSqlite } from "./utils/journals.js"

type Journal = DurableExecutionJournal.Journal

class Label extends Message.TaggedMessage<Label>()(
  "Label",
  Schema.String,
  Schema.String,
  { orderId: Schema.String },
  (_) => _.orderId
) {}

/** `charge` (its body waits for `gate`, when given) then a child `Label` (its activity `label`). */
const chargeThenChild = (log: RunLog, gate: Deferred.Deferred<void> | undefined) =>
  Workflow.union(
    Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        const amount = yield* recorded(log, "charge", order.amount, Schema.Number, {
          body: gate === undefined ? Effect.void : Deferred.await(gate)
        })
        const label = yield* Workflow.executeChild(new Label({ orderId: order.orderId }), { childId: "label" })
        return amount + label.length
      })),
    Workflow.make(Label, () => recorded(log, "label", "printed", Schema.String))
  )

/**
 * `charge` fails (once `gate` opens) and is not retried, by a policy slow to decide (a schedule whose step
 * is effectful: here it takes 300 ms of the live clock, the time the engine would need to stop).
 */
const chargeDeclined = (log: RunLog, gate: Deferred.Deferred<void>) =>
  Workflow.make(Order, () =>
    recorded(log, "charge", 0, Schema.Number, { fail: "declined", body: Deferred.await(gate) }).pipe(
      Activity.retry(Schedule.recurs(0).pipe(Schedule.tapInput(() => Effect.sleep("300 millis"))))
    ))

/** `reserve` (compensated by `release`) then `charge`, which fails (its body waits for `gate`, when given). */
const reserveThenDeclined = (log: RunLog, gate: Deferred.Deferred<void> | undefined) =>
  Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      yield* recorded(log, "reserve", order.orderId, Schema.String).pipe(
        Workflow.withCompensation(() => Effect.sync(() => void log.runs.push({ id: "release", attempt: 0 })))
      )
      return yield* recorded(log, "charge", 0, Schema.Number, {
        fail: "declined",
        body: gate === undefined ? Effect.void : Deferred.await(gate)
      })
    }))

/** A journal whose commit fails once (retryable, nothing written) when armed and it carries `charge`'s result. */
const failingOnceOnCharge = (inner: Journal) => {
  const state = { armed: false, failed: 0 }
  const journal: Journal = {
    ...inner,
    commit: (writes) =>
      Effect.suspend(() => {
        const carriesCharge = writes.some((write) =>
          write._tag === "Append" && write.events.some((event) => event.kind === "StepCompleted" && event.stepId === "charge")
        )
        if (state.armed && carriesCharge) {
          state.armed = false
          state.failed++
          return Effect.fail(
            new DurableExecutionJournal.JournalError({ operation: "commit", message: "connection reset", retryable: true })
          )
        }
        return inner.commit(writes)
      })
  }
  return { journal, state }
}

/** A journal whose commits carrying `charge`'s result never answer once `hang.on` (a connection that hangs). */
const hangingOnCharge = (inner: Journal) => {
  const hang = { on: false, hung: 0 }
  const journal: Journal = {
    ...inner,
    commit: (writes) =>
      Effect.suspend(() => {
        const carriesCharge = writes.some((write) =>
          write._tag === "Append" && write.events.some((event) => event.kind === "StepCompleted" && event.stepId === "charge")
        )
        if (!hang.on || !carriesCharge) return inner.commit(writes)
        hang.hung++
        return Effect.never
      })
  }
  return { journal, hang }
}

describeJournals("graceful shutdown, at its edges", (journalCase) => {
  it.live("a result recorded during the grace period is committed through a passing journal failure", () =>
    Effect.gen(function*() {
      const base = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const { journal, state } = failingOnceOnCharge(base)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const { closing } = yield* closingWhileRunning(journal, chargeThenShip(onA, gate), () => onA.count("charge") === 1, {
        shutdownGracePeriod: "30 seconds",
        // (short: were o1's claim kept by A, B would take it over after it instead of failing on it)
        claimLease: "2 seconds"
      })
      // charge ends while the engine waits for it; the first commit of its result fails (a dropped
      // connection, retryable), as the committer's retries are there for
      state.armed = true
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      expect(state.failed).toBe(1)
      expect(onA.ids()).toEqual(["charge"])
      // B resumes o1: charge's result is in the journal, only ship runs
      const onB = new RunLog()
      const done = yield* resumedByB(base, chargeThenShip(onB, undefined), "Completed")
      expect(done).toEqual({ _tag: "Completed", exit: Exit.succeed(5) })
      expect(onB.ids()).toEqual(["ship"])
    }).pipe(Effect.scoped), 60_000)

  it.live("a commit that hangs during the grace period does not hold the shutdown past the grace period", () =>
    Effect.gen(function*() {
      const base = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const { hang, journal } = hangingOnCharge(base)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const { closing, logged } = yield* closingWhileRunning(journal, chargeThenShip(onA, gate), () => onA.count("charge") === 1, { shutdownGracePeriod: "500 millis" })
      hang.on = true
      yield* Deferred.succeed(gate, undefined)
      // (disconnected: a close that does not end is reported by the timeout, not waited for)
      const closed = yield* Effect.exit(Effect.timeout(Effect.disconnect(Fiber.join(closing)), "10 seconds"))
      expect(Exit.isSuccess(closed)).toBe(true)
      expect(hang.hung).toBeGreaterThan(0)
      expect(logged.some((line) => line.includes("the results of 1 executions were not committed within"))).toBe(true)
      // charge's result never reached the journal: B runs charge again, as after a crash
      const onB = new RunLog()
      const done = yield* resumedByB(base, chargeThenShip(onB, undefined), "Completed")
      expect(done).toEqual({ _tag: "Completed", exit: Exit.succeed(5) })
      expect(onB.ids()).toEqual(["charge", "ship"])
    }).pipe(Effect.scoped), 60_000)

  it.live("of two activities in parallel, the one that ends during the grace period is recorded; the other, cut off at its end, runs again", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const both = (log: RunLog, gate: Deferred.Deferred<void> | undefined) =>
        Workflow.make(Order, (order) =>
          Effect.gen(function*() {
            const [amount] = yield* Effect.all([
              recorded(log, "charge", order.amount, Schema.Number, {
                body: gate === undefined ? Effect.void : Deferred.await(gate)
              }),
              recorded(log, "reserve", undefined, Schema.Void, { body: gate === undefined ? Effect.void : Effect.never })
            ], { concurrency: "unbounded" })
            yield* recorded(log, "ship", undefined, Schema.Void)
            return amount
          }))
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const { closing, logged } = yield* closingWhileRunning(journal, both(onA, gate), () => onA.count("charge") === 1 && onA.count("reserve") === 1, { shutdownGracePeriod: "1 second" })
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      expect(logged.some((line) => line.includes("still ran an activity after the shutdown's grace period"))).toBe(true)
      const onB = new RunLog()
      const done = yield* resumedByB(journal, both(onB, undefined), "Completed")
      expect(done).toEqual({ _tag: "Completed", exit: Exit.succeed(5) })
      expect(onB.ids()).toEqual(["reserve", "ship"])
    }).pipe(Effect.scoped), 60_000)

  it.live("an execution cancelled during the grace period is recorded cancelled, its activity in flight cut off", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const { closing } = yield* closingWhileRunning(journal, chargeThenShip(onA, gate), () => onA.count("charge") === 1, { shutdownGracePeriod: "30 seconds" })
      // another engine cancels o1 while A waits for charge: A hears of it (its execution is live there)
      const c = yield* WorkflowEngine.make(chargeThenShip(new RunLog(), undefined), { identity: "C", resumeOnStart: false }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      expect(yield* c.cancel("o1")).toBe("cancelled")
      yield* Fiber.join(closing)
      expect(onA.ids()).toEqual(["charge"])
      const onB = new RunLog()
      const done = yield* resumedByB(journal, chargeThenShip(onB, undefined), "Cancelled")
      expect(done).toEqual({ _tag: "Cancelled" })
      expect(onB.ids()).toEqual([])
    }).pipe(Effect.scoped), 60_000)

  it.live("a compensation due during the grace period waits for the next run, where it runs once", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const { closing } = yield* closingWhileRunning(journal, reserveThenDeclined(onA, gate), () => onA.count("charge") === 1, { shutdownGracePeriod: "30 seconds" })
      // charge fails while the engine stops: the saga's compensation is due, and starts nothing here
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      expect(onA.ids()).toEqual(["reserve", "charge"])
      const onB = new RunLog()
      const done = yield* resumedByB(journal, reserveThenDeclined(onB, undefined), "Failed")
      expect(done._tag === "Failed" && Exit.isFailure(done.exit) && Cause.failureOption(done.exit.cause)).toEqual(
        Option.some("declined")
      )
      expect(onB.ids()).toEqual(["release"])
    }).pipe(Effect.scoped), 60_000)

  it.live("a failure decided (not retried) during the grace period is committed before the engine stops", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const { closing } = yield* closingWhileRunning(journal, chargeDeclined(onA, gate), () => onA.count("charge") === 1, { shutdownGracePeriod: "30 seconds" })
      // charge fails while the engine waits for it; the engine waits for its policy's decision too
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      // B resumes o1: charge's failure is in the journal, charge does not run again
      const onB = new RunLog()
      const done = yield* resumedByB(journal, chargeDeclined(onB, gate), "Failed")
      expect(done._tag === "Failed" && Exit.isFailure(done.exit) && Cause.failureOption(done.exit.cause)).toEqual(
        Option.some("declined")
      )
      expect(onB.ids()).toEqual([])
    }).pipe(Effect.scoped), 60_000)

  it.live("a child started during the grace period waits for the next run; the step before it is not run again", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      // (the default lease, 30 s: an execution stopped on A, its claim kept, would not resume on B in time)
      const { closing } = yield* closingWhileRunning(journal, chargeThenChild(onA, gate), () => onA.count("charge") === 1, {
        shutdownGracePeriod: "30 seconds"
      })
      // charge ends while the engine stops: the body goes on to start its child, which the closing engine
      // would refuse (the execution stopped, its claim kept until its lease ends)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      expect(onA.ids()).toEqual(["charge"])
      // B resumes o1 at once (its claim was released): the child starts there, charge does not run again
      const onB = new RunLog()
      const done = yield* resumedByB(journal, chargeThenChild(onB, undefined), "Completed")
      expect(done).toEqual({ _tag: "Completed", exit: Exit.succeed(12) })
      expect(onB.ids()).toEqual(["label"])
    }).pipe(Effect.scoped), 60_000)
})

/** `charge` (its body waits for `gate`); every run is recorded with its pod. */
class Shipment extends Message.TaggedMessage<Shipment>()(
  "Shipment",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, amount: Schema.Number, gated: Schema.Boolean },
  (shipment) => shipment.id
) {}

const shipmentWorkflow = (runs: Array<{ readonly id: string; readonly pod: number }>, gate: Deferred.Deferred<void>) =>
  Workflow.make(Shipment, (shipment) =>
    Activity.make("charge", Schema.Number, Schema.Never)(Effect.gen(function*() {
      runs.push({ id: shipment.id, pod: yield* PodName })
      if (shipment.gated) yield* Deferred.await(gate)
      return shipment.amount
    })))

/** `charge`, whose body on pod 2 waits for `gate`; its starts and interruptions are recorded with their pod. */
const podTwoWaits = (events: Array<string>, gate: Deferred.Deferred<void>) =>
  Workflow.make(Shipment, (shipment) =>
    Activity.make("charge", Schema.Number, Schema.Never)(Effect.gen(function*() {
      const pod = yield* PodName
      events.push(`start:${pod}`)
      if (pod === 2) {
        yield* Effect.onInterrupt(Deferred.await(gate), () => Effect.sync(() => void events.push(`interrupted:${pod}`)))
      }
      return shipment.amount
    })))

for (const database of clusterDatabases) {
  describe.skipIf(database.skip !== undefined)(`graceful shutdown, at its edges, on the cluster [${database.name}]`, () => {
    it.scopedLive("a pod that loses its shards during its grace period stops the activity before the next owner runs it", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const gate = yield* Deferred.make<void>()
        // an execution whose shard the leaving pod serves
        const { id, leaving, logged, staying } = yield* stayingAndLeaving(database, podTwoWaits(events, gate))
        const shipment = new Shipment({ id, amount: 7, gated: true })
        yield* staying.engine.start(shipment)
        yield* until(Effect.sync(() => events.length === 1))
        // the pod leaves while charge runs; during its grace period it is cut off (its lease ends by its
        // own clock, then the manager gives its shards to pod 1)
        yield* Effect.fork(leaving.leave)
        yield* until(Effect.sync(() => logged.some((line) => line.includes("letting the activities of 1 executions finish"))))
        yield* leaving.crash
        yield* until(Effect.sync(() => events.includes("start:1")), "30 seconds")
        // charge never ran on both pods at once
        expect(events).toEqual(["start:2", "interrupted:2", "start:1"])
        yield* Deferred.succeed(gate, undefined)
        expect(yield* staying.engine.result(shipment.id, { timeout: "30 seconds" })).toEqual(Exit.succeed(7))
      }), 90_000)

    it.scopedLive("a start sent to a pod during its grace period goes to the shard's next owner", () =>
      Effect.gen(function*() {
        const runs: Array<{ readonly id: string; readonly pod: number }> = []
        const gate = yield* Deferred.make<void>()
        const db = yield* database.make
        const { startPod } = yield* makeEngineCluster(db, shipmentWorkflow(runs, gate), {
          shardCheckInterval: "1 hour",
          shutdownGracePeriod: "30 seconds"
        })
        const { logged, logger } = collecting()
        const staying = yield* startPod(1)
        // (its refusals of starts are logged at the debug level)
        const leaving = yield* startPod(2).pipe(
          Effect.provide(Logger.add(logger)),
          Effect.provide(Logger.minimumLogLevel(LogLevel.Debug))
        )
        yield* until(Effect.map(Effect.forEach([staying, leaving], served), (all) => all.every((shards) => shards.length === 15)))
        // two executions whose shards the leaving pod serves: the first runs there while it leaves
        const leavingShards = new Set(yield* served(leaving))
        const ids: Array<string> = []
        for (let id = 0; ids.length < 2; id++) {
          if (leavingShards.has(leaving.sharding.getShardId(`Shipment/s${id}`).value)) ids.push(`s${id}`)
        }
        const first = new Shipment({ id: ids[0]!, amount: 7, gated: true })
        yield* staying.engine.start(first)
        yield* until(Effect.sync(() => runs.length === 1))
        const left = yield* Effect.fork(leaving.leave)
        yield* until(Effect.sync(() => logged.some((line) => line.includes("letting the activities of 1 executions finish"))))
        // the second is started while the leaving pod waits for the first's activity: it refuses it, and
        // the caller sends it again until the shard's next owner takes it
        const second = new Shipment({ id: ids[1]!, amount: 8, gated: false })
        const starting = yield* Effect.fork(staying.engine.start(second))
        yield* until(Effect.map(
          Fiber.poll(starting),
          (done) => Option.isSome(done) || logged.some((line) => line.includes("refuses a start"))
        ))
        expect(Option.isNone(yield* Fiber.poll(starting))).toBe(true)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(left)
        yield* Fiber.join(starting)
        expect(yield* staying.engine.result(second.id, { timeout: "30 seconds" })).toEqual(Exit.succeed(8))
        expect(yield* staying.engine.result(first.id, { timeout: "30 seconds" })).toEqual(Exit.succeed(7))
        expect(runs).toEqual([{ id: first.id, pod: 2 }, { id: second.id, pod: 1 }])
      }), 90_000)
  })
}

/** `ledger` (transactional: a row in `grace_ledger`, its body waiting for `gate` when given) then `ship`. */
const ledgerThenShip = (log: RunLog, gate: Deferred.Deferred<void> | undefined) =>
  Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      const amount = yield* Activity.make("ledger", Schema.Number, Schema.String)(
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          log.runs.push({ id: "ledger", attempt: yield* Activity.currentAttempt })
          yield* sql`INSERT INTO grace_ledger (order_id) VALUES (${order.orderId})`
          if (gate !== undefined) yield* Deferred.await(gate)
          return order.amount
        }).pipe(Effect.orDie)
      ).pipe(Activity.transactional)
      yield* recorded(log, "ship", undefined, Schema.Void)
      return amount
    }))

describeJournals("graceful shutdown, at its edges, transactional", (journalCase) => {
  it.live("a transactional activity that ends during the grace period commits once with its result", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE IF NOT EXISTS grace_ledger (order_id TEXT NOT NULL)`
      yield* sql`DELETE FROM grace_ledger`
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      const scopeA = yield* Scope.make()
      const { logged, logger } = collecting()
      const a = yield* WorkflowEngine.make(ledgerThenShip(onA, gate), { identity: "A", shutdownGracePeriod: "30 seconds" }).pipe(
        Effect.provide(Logger.add(logger)),
        Scope.extend(scopeA)
      )
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 5 }))
      yield* eventually(() => onA.count("ledger") === 1, "ledger started")
      const closing = yield* Effect.fork(Scope.close(scopeA, Exit.void))
      yield* eventually(() => logged.some((line) => line.includes("letting the activities of 1 executions finish")), "grace")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      expect(onA.ids()).toEqual(["ledger"])
      const onB = new RunLog()
      const b = yield* WorkflowEngine.make(ledgerThenShip(onB, undefined), { identity: "B" })
      const done = yield* Effect.timeout(awaitStatus(b, "o1", "Completed"), "20 seconds")
      expect(done).toEqual({ _tag: "Completed", exit: Exit.succeed(5) })
      expect(onB.ids()).toEqual(["ship"])
      const rows = yield* sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM grace_ledger`
      expect(Number(rows[0]!.n)).toBe(1)
      yield* sql`DROP TABLE grace_ledger`
    }).pipe(Effect.scoped, Effect.provide(journalCase.sqlLayer!)), 60_000)
}, journalCases.filter((journalCase) => journalCase.sqlLayer !== undefined))

/** The pod's served shards, empty while `on` (a lapse of its lease: it still holds them); reads counted. */
class Lapse {
  on = false
  reads = 0
  readonly view = (sharding: Sharding.Sharding): Sharding.Sharding => ({
    ...sharding,
    servedShardEpochs: Effect.map(sharding.servedShardEpochs, (shards) => {
      if (!this.on) return shards
      this.reads++
      return new Map<number, number>()
    })
  })
}

it.scopedLive("a result recorded during the grace period in a lapse of the pod's lease waits for its renewal and is committed", () =>
  Effect.gen(function*() {
    const runs: Array<{ readonly id: string; readonly pod: number }> = []
    const gate = yield* Deferred.make<void>()
    const lapse = new Lapse()
    const db = yield* sharedSqlite
    const { startPod } = yield* makeEngineCluster(db, shipmentWorkflow(runs, gate), {
      shardCheckInterval: "1 hour",
      shutdownGracePeriod: "30 seconds",
      podView: lapse.view
    })
    const { logged, logger } = collecting()
    const first = yield* startPod(1).pipe(Effect.provide(Logger.add(logger)))
    yield* until(Effect.map(served(first), (shards) => shards.length === 30))
    const shipment = new Shipment({ id: "s1", amount: 7, gated: true })
    yield* first.engine.start(shipment)
    yield* until(Effect.sync(() => runs.length === 1))
    const left = yield* Effect.fork(first.leave)
    yield* until(Effect.sync(() => logged.some((line) => line.includes("letting the activities of 1 executions finish"))))
    // charge ends while the pod's lease lapses: its result is written on the lapsed view, then the lease
    // is renewed (at the same epochs) and the pod leaves
    lapse.on = true
    yield* Deferred.succeed(gate, undefined)
    yield* until(Effect.sync(() => lapse.reads >= 1))
    lapse.on = false
    yield* Fiber.join(left)
    // the next pod takes the shards: charge's result is in the journal, charge does not run again
    const second = yield* startPod(2)
    expect(yield* second.engine.result(shipment.id, { timeout: "30 seconds" })).toEqual(Exit.succeed(7))
    expect(runs).toEqual([{ id: "s1", pod: 1 }])
  }), 90_000)
