/**
 * A graceful shutdown with `shutdownGracePeriod`: the activities in flight finish and their results are
 * recorded before the engine stops, no activity starts meanwhile, and the wait is bounded (live clock).
 * The next engine on the journal resumes the executions without running a finished activity again. On the
 * cluster: a pod that leaves lets its activities in flight finish before it hands its shards back.
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Logger, Option, Schema } from "effect"
import { eventually } from "./utils/engine.js"
import { Order, RunLog } from "./utils/fixtures.js"
import { clusterDatabases, makeEngineCluster, PodName, served, until } from "./utils/engineCluster.js"
import { chargeThenShip, closingWhileRunning, collecting, resumedByB, stayingAndLeaving } from "./utils/grace.js"
import { describeJournals } from "./utils/journals.js"

describeJournals("graceful shutdown with a grace period", (journalCase) => {
  it.live("the activity in flight finishes and is recorded; the next step runs where the execution resumes", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const onA = new RunLog()
      const gate = yield* Deferred.make<void>()
      // A shuts down while charge runs: once its close has begun to wait for charge, charge ends
      const { closing } = yield* closingWhileRunning(journal, chargeThenShip(onA, gate), () => onA.count("charge") === 1, {
        shutdownGracePeriod: "30 seconds"
      })
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      // charge finished on A and nothing started after it there
      expect(onA.ids()).toEqual(["charge"])
      // B resumes o1: charge is recorded, ship runs on B
      const onB = new RunLog()
      expect(yield* resumedByB(journal, chargeThenShip(onB, undefined), "Completed")).toEqual({
        _tag: "Completed",
        exit: Exit.succeed(5)
      })
      expect(onB.ids()).toEqual(["ship"])
    }).pipe(Effect.scoped), 60_000)

  it.live("an activity that outlasts the grace period is interrupted at its end and runs again where the execution resumes", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal.DurableExecutionJournal)
      const onA = new RunLog()
      const never = yield* Deferred.make<void>()
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* WorkflowEngine.make(chargeThenShip(onA, never), { identity: "A", shutdownGracePeriod: "300 millis" }).pipe(
          Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
        )
        yield* a.sendDiscard(new Order({ orderId: "o1", amount: 5 }))
        yield* eventually(() => onA.count("charge") === 1, "charge started")
      }))
      expect(onA.ids()).toEqual(["charge"])
      const onB = new RunLog()
      expect(yield* resumedByB(journal, chargeThenShip(onB, undefined), "Completed")).toEqual({
        _tag: "Completed",
        exit: Exit.succeed(5)
      })
      // charge cut off on A runs again on B, as its next attempt
      expect(onB.ids()).toEqual(["charge", "ship"])
      expect(onB.runs[0]!.attempt).toBe(onA.runs[0]!.attempt + 1)
    }).pipe(Effect.scoped), 60_000)
})

/** `charge` (its body waits for `gate`) then `ship`; every run is recorded with its pod. */
class Shipment extends Message.TaggedMessage<Shipment>()(
  "Shipment",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, amount: Schema.Number },
  (shipment) => shipment.id
) {}

const shipmentWorkflow = (
  runs: Array<{ readonly id: string; readonly pod: number; readonly execution: string }>,
  gate: Deferred.Deferred<void>
) =>
  Workflow.make(Shipment, (shipment) => {
    const step = <A>(id: string, value: A, schema: Schema.Schema<A, any>, body: Effect.Effect<void>) =>
      Activity.make(id, schema, Schema.Never)(Effect.gen(function*() {
        runs.push({ id, pod: yield* PodName, execution: shipment.id })
        yield* body
        return value
      }))
    return Effect.gen(function*() {
      const amount = yield* step("charge", shipment.amount, Schema.Number, Deferred.await(gate))
      yield* Workflow.sleep("cool-down", "1 millis")
      yield* step("ship", undefined, Schema.Void, Effect.void)
      return amount
    })
  })

/**
 * Pod 1 alone starts ten shipments (`m0`..`m9`, each charge waiting for `gate`), then pod 2 joins; returns once
 * the manager's rebalance has pod 1 drain the shards it hands off. The pods log to `logged` (the hand-off runs
 * in the fiber of the manager's call: the logger is set before the cluster is made).
 */
const rebalancedWhileCharging = (
  database: (typeof clusterDatabases)[number],
  timings: { readonly entityTerminationTimeout: Duration.Duration; readonly leaseDuration: Duration.Duration }
) => {
  const { logged, logger } = collecting()
  return Effect.gen(function*() {
    const runs: Array<{ readonly id: string; readonly pod: number; readonly execution: string }> = []
    const gate = yield* Deferred.make<void>()
    const db = yield* database.make
    const { startPod } = yield* makeEngineCluster(db, shipmentWorkflow(runs, gate), {
      shardCheckInterval: "1 hour",
      shutdownGracePeriod: "30 seconds",
      ...timings
    })
    const first = yield* startPod(1)
    yield* until(Effect.map(served(first), (shards) => shards.length === 30))
    const shipments = Array.from({ length: 10 }, (_, i) => new Shipment({ id: `m${i}`, amount: i }))
    for (const shipment of shipments) yield* first.engine.start(shipment)
    yield* until(Effect.sync(() => runs.length === 10))
    // a second pod joins: the manager moves half the shards to it while the charges run on the first
    const second = yield* startPod(2)
    yield* until(Effect.sync(() => logged.some((line) => line.startsWith("handing off shards: letting the activities"))))
    return { first, second, shipments, runs, gate, logged }
  }).pipe(Effect.provide(Logger.add(logger)))
}

for (const database of clusterDatabases) {
  describe.skipIf(database.skip !== undefined)(`graceful shutdown with a grace period, on the cluster [${database.name}]`, () => {
    it.scopedLive("a pod leaving lets the activity in flight finish there; the execution goes on on the shard's new owner", () =>
      Effect.gen(function*() {
        const runs: Array<{ readonly id: string; readonly pod: number; readonly execution: string }> = []
        const gate = yield* Deferred.make<void>()
        // an execution whose shard the leaving pod serves
        const { id, leaving, logged, staying } = yield* stayingAndLeaving(database, shipmentWorkflow(runs, gate))
        const shipment = new Shipment({ id, amount: 7 })
        yield* staying.engine.start(shipment)
        yield* until(Effect.sync(() => runs.length === 1))
        expect(runs).toEqual([{ id: "charge", pod: 2, execution: shipment.id }])
        // the pod leaves while charge runs: its engine waits for charge (which then ends) before it stops
        const left = yield* Effect.fork(leaving.leave)
        yield* until(Effect.sync(() => logged.some((line) => line.includes("letting the activities of 1 executions finish"))))
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(left)
        expect(yield* staying.engine.result(shipment.id, { timeout: "30 seconds" })).toEqual(Exit.succeed(7))
        // charge ran once, on the pod that left; ship on the pod that took its shard
        expect(runs).toEqual([
          { id: "charge", pod: 2, execution: shipment.id },
          { id: "ship", pod: 1, execution: shipment.id }
        ])
      }), 90_000)

    it.scopedLive("a start sent during a grace period longer than a start's usual resends (8.5 s) is sent again until the shard's next owner runs it", () =>
      Effect.gen(function*() {
        const runs: Array<{ readonly id: string; readonly pod: number; readonly execution: string }> = []
        const gate = yield* Deferred.make<void>()
        const { id, leaving, logged, otherId, staying } = yield* stayingAndLeaving(database, shipmentWorkflow(runs, gate), true)
        yield* staying.engine.start(new Shipment({ id, amount: 7 }))
        yield* until(Effect.sync(() => runs.length === 1))
        // the pod leaves while charge runs, holding its shards for as long as charge takes
        const left = yield* Effect.fork(leaving.leave)
        yield* until(Effect.sync(() => logged.some((line) => line.includes("letting the activities of 1 executions finish"))))
        // a start of another execution on one of those shards: refused by the leaving pod (once; its resends
        // get the same reply from the pod's reply cache), sent again
        const sentAt = Date.now()
        const second = yield* Effect.fork(staying.engine.start(new Shipment({ id: otherId, amount: 9 })))
        // for longer than the 12 resends, about 8.5 s, a start had at most (it then failed as "the shard moved")
        yield* until(Effect.map(Fiber.poll(second), (done) => Option.isSome(done) || Date.now() - sentAt > 10_000), "30 seconds")
        expect(logged.filter((line) => line.includes("it refuses a start")).length).toBeGreaterThan(0)
        expect(yield* Fiber.poll(second)).toEqual(Option.none())
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(left)
        yield* Fiber.join(second)
        expect(yield* staying.engine.result(otherId, { timeout: "30 seconds" })).toEqual(Exit.succeed(9))
        expect(runs.filter((run) => run.execution === otherId).map((run) => `${run.id}@${run.pod}`)).toEqual([
          "charge@1",
          "ship@1"
        ])
      }), 90_000)

    it.scopedLive("a start sent while a shard the manager moves away drains for longer than the messenger's sendRetryTimeout (10 s) runs on the shard's next owner", () =>
      Effect.gen(function*() {
        const { first, gate, second } = yield* rebalancedWhileCharging(database, {
          // (a grace under the termination timeout, as the docs ask, and a lease well over both)
          entityTerminationTimeout: Duration.seconds(40),
          leaseDuration: Duration.seconds(90)
        })
        // an execution on one of the shards the first pod hands off (their drain runs: charge waits)
        const releasing = yield* first.sharding.releasingShardEpochs
        let n = 0
        while (!releasing.has(first.sharding.getShardId(`Shipment/r${n}`).value)) n++
        const sentAt = Date.now()
        const started = yield* Effect.fork(Effect.exit(second.engine.start(new Shipment({ id: `r${n}`, amount: 3 }))))
        // the drain lasts longer than the messenger retries a routing failure
        yield* until(Effect.map(Fiber.poll(started), (done) => Option.isSome(done) || Date.now() - sentAt > 13_000), "30 seconds")
        yield* Deferred.succeed(gate, undefined)
        const exit = yield* Fiber.join(started)
        expect(Exit.isSuccess(exit) ? "started" : String(Cause.squash(exit.cause))).toEqual("started")
        expect(yield* second.engine.result(`r${n}`, { timeout: "30 seconds" })).toEqual(Exit.succeed(3))
      }), 90_000)

    it.scopedLive("a shard the manager moves away lets the activities in flight finish on its old owner first", () =>
      Effect.gen(function*() {
        const { gate, runs, second, shipments } = yield* rebalancedWhileCharging(database, {
          // (the hand-off's stop hooks, the drain among them, are bounded by it: room for a loaded machine)
          entityTerminationTimeout: Duration.seconds(5),
          // (a lease well over the termination timeout: a revocation when less than that timeout is left of
          // the lease, a renewal late under load, is stopped as lost, not handed off)
          leaseDuration: Duration.seconds(30)
        })
        yield* Deferred.succeed(gate, undefined)
        const results = yield* Effect.forEach(shipments, (shipment) =>
          second.engine.result(shipment.id, { timeout: "30 seconds" }))
        expect(results).toEqual(shipments.map((shipment) => Exit.succeed(shipment.amount)))
        // every charge ran once, on the first pod; some executions went on on the second pod
        const charges = runs.filter((run) => run.id === "charge")
        expect(charges.map((run) => run.execution).sort()).toEqual(shipments.map((shipment) => shipment.id).sort())
        expect(charges.every((run) => run.pod === 1)).toBe(true)
        const ships = runs.filter((run) => run.id === "ship")
        expect(ships.length).toBe(10)
        expect(ships.some((run) => run.pod === 2)).toBe(true)
      }), 90_000)
  })
}
