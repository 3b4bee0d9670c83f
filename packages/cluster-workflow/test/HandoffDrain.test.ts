/**
 * A shard the manager moves away from a pod that stays, with the engine's `shutdownGracePeriod`: the
 * results its executions record while the pod's stop of the shard runs are the old owner's (the shard's
 * fence is still its own), from the very step the pod stops serving the shard, and whatever other stop of
 * the shard overlaps; so an activity that finished there does not run again on the new owner.
 */
import { Message, type Sharding, ShardId } from "@effect-cluster/cluster"
import { Activity, DurableExecutionJournal, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Exit, Fiber, FiberId, HashSet, Layer, Logger, Schema } from "effect"
import { clusterDatabases, type EnginePod, makeEngineCluster, PodName, served, until } from "./utils/engineCluster.js"
import { collecting } from "./utils/grace.js"
import type { SharedDatabase } from "./utils/journals.js"

class Shipment extends Message.TaggedMessage<Shipment>()(
  "Shipment",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, amount: Schema.Number },
  (shipment) => shipment.id
) {}

type Runs = Array<{ readonly id: string; readonly pod: number }>

/** One gate per execution id, made on first use. */
class Gates {
  private readonly gates = new Map<string, Deferred.Deferred<void>>()
  of(id: string) {
    let gate = this.gates.get(id)
    if (gate === undefined) {
      gate = Deferred.unsafeMake<void>(FiberId.none)
      this.gates.set(id, gate)
    }
    return gate
  }
  open(id: string) {
    return Deferred.succeed(this.of(id), undefined)
  }
}

/** `charge`, whose body waits for its execution's gate; every run is recorded with its pod. */
const charging = (runs: Runs, gates: Gates) =>
  Workflow.make(Shipment, (shipment) =>
    Activity.make("charge", Schema.Number, Schema.Never)(Effect.gen(function*() {
      runs.push({ id: shipment.id, pod: yield* PodName })
      yield* Deferred.await(gates.of(shipment.id))
      return shipment.amount
    })))

/** `charge`, whose body waits for its execution's gate and cannot be interrupted meanwhile. */
const stubbornCharging = (runs: Runs, gates: Gates) =>
  Workflow.make(Shipment, (shipment) =>
    Activity.make("charge", Schema.Number, Schema.Never)(Effect.gen(function*() {
      runs.push({ id: shipment.id, pod: yield* PodName })
      yield* Effect.uninterruptible(Deferred.await(gates.of(shipment.id)))
      return shipment.amount
    })))

/** Whether `charge`'s result is in the journal (read on a connection of its own). */
const chargeCommitted = (db: SharedDatabase) =>
  Effect.map(Layer.build(db.journal()), (context) => {
    const journal = Context.get(context, DurableExecutionJournal.DurableExecutionJournal)
    return (id: string) =>
      Effect.map(
        Effect.orDie(journal.events({ workflow: "Shipment", executionId: id }, 0)),
        (events) => events.some((event) => event.kind === "StepCompleted" && event.stepId === "charge")
      )
  })

const shardOf = (pod: EnginePod<Shipment>, id: string) => pod.sharding.getShardId(`Shipment/${id}`).value

/**
 * Pod 1's view of its `Sharding` whose shard stop hooks (the engine's drain among them) begin a hand-off
 * only once `latch` opens: `released` has the shards of the first. (The pod runs its stop hooks in fibers
 * of their own once it has released the shards: a hook may begin at any later moment.) `cutShort`: the
 * pod's entityTerminationTimeout ended a hook still waiting for the latch (the pod then confirmed the
 * release, and the shard's next owner took it).
 */
class LateHooks {
  readonly released = Deferred.unsafeMake<ReadonlyArray<number>>(FiberId.none)
  readonly latch = Deferred.unsafeMake<void>(FiberId.none)
  cutShort = false
  readonly view = (sharding: Sharding.Sharding): Sharding.Sharding =>
    sharding.podAddress.port !== 1 ? sharding : {
      ...sharding,
      registerShardStop: (stop) =>
        sharding.registerShardStop((shards, kind) =>
          kind !== "handoff" ? stop(shards, kind) : Deferred.succeed(this.released, shards).pipe(
            Effect.zipRight(Effect.onInterrupt(Deferred.await(this.latch), () =>
              Effect.sync(() => {
                this.cutShort = true
              }))),
            Effect.zipRight(stop(shards, kind))
          )
        )
    }
}

/**
 * Each pod's view of its `Sharding` that counts the engine's reads of the shards it holds (each look at the
 * pod's shards makes one) that lack `shard`.
 */
class HeldReads {
  shard = -1
  without = 0
  readonly view = (sharding: Sharding.Sharding): Sharding.Sharding => ({
    ...sharding,
    getAssignedShardIds: Effect.tap(sharding.getAssignedShardIds, (shards) =>
      Effect.sync(() => {
        if (this.shard >= 0 && !HashSet.some(shards, (shard) => shard.value === this.shard)) this.without++
      }))
  })
}

for (const database of clusterDatabases) {
  describe.skipIf(database.skip !== undefined)(`a shard handed off with a grace period [${database.name}]`, () => {
    it.scopedLive("a result recorded after the pod stopped serving the shard, before the engine's stop hook began, is committed: the activity runs once", () =>
      Effect.gen(function*() {
        const runs: Runs = []
        const gates = new Gates()
        const late = new LateHooks()
        const db = yield* database.make
        const { startPod } = yield* makeEngineCluster(db, charging(runs, gates), {
          shardCheckInterval: "1 hour",
          shutdownGracePeriod: "30 seconds",
          entityTerminationTimeout: Duration.seconds(5),
          // (a lease well over the termination timeout: a revocation when less than that timeout is left of
          // the lease, a renewal late under load, is stopped as lost, not handed off)
          leaseDuration: Duration.seconds(30),
          podView: late.view
        })
        const committed = yield* chargeCommitted(db)
        const first = yield* startPod(1)
        yield* until(Effect.map(served(first), (shards) => shards.length === 30))
        const shipments = Array.from({ length: 12 }, (_, i) => new Shipment({ id: `w${i}`, amount: i }))
        for (const shipment of shipments) yield* first.engine.start(shipment)
        yield* until(Effect.sync(() => runs.length === shipments.length))
        // a second pod joins: the manager moves half the shards to it; pod 1 has released them (no longer
        // serves them) and its engine's stop hook has not begun
        const second = yield* startPod(2)
        const released = new Set(yield* Deferred.await(late.released))
        const handedOff = shipments.filter((shipment) => released.has(shardOf(first, shipment.id)))
        expect(handedOff.length).toBeGreaterThan(0)
        expect((yield* first.sharding.servedShardEpochs).has(shardOf(first, handedOff[0]!.id))).toBe(false)
        // the charges end in that window: their results are committed under the fences still pod 1's (before
        // the pod gives up waiting for its hooks: refused, they would be committed only by pod 2's runs)
        for (const shipment of shipments) yield* gates.open(shipment.id)
        yield* until(
          Effect.map(
            Effect.forEach(handedOff, (shipment) => committed(shipment.id)),
            (all) => all.every(Boolean) || late.cutShort
          ),
          "10 seconds"
        )
        expect(late.cutShort).toBe(false)
        yield* Deferred.succeed(late.latch, undefined)
        const results = yield* Effect.forEach(shipments, (shipment) =>
          second.engine.result(shipment.id, { timeout: "30 seconds" }))
        expect(results).toEqual(shipments.map((shipment) => Exit.succeed(shipment.amount)))
        // every charge ran once, on pod 1
        expect(runs.map((run) => run.id).sort()).toEqual(shipments.map((shipment) => shipment.id).sort())
        expect(runs.every((run) => run.pod === 1)).toBe(true)
      }), 90_000)

    it.scopedLive("two stops of one shard overlap (it came back at a later epoch and is revoked again): the first to end does not refuse the other's results", () => {
      // (the hand-offs run in the fiber of the call that asks for them: this test's, which logs here)
      const { logged, logger } = collecting()
      const draining = (n: number) =>
        Effect.sync(() => logged.some((line) => line.includes(`letting the activities of ${n} executions finish`)))
      return Effect.gen(function*() {
        const runs: Runs = []
        const gates = new Gates()
        const reads = new HeldReads()
        const db = yield* database.make
        const { startPod, stopManager } = yield* makeEngineCluster(db, charging(runs, gates), {
          shardCheckInterval: "1 hour",
          shutdownGracePeriod: "30 seconds",
          entityTerminationTimeout: Duration.seconds(12),
          leaseDuration: Duration.seconds(30),
          podView: reads.view
        })
        const committed = yield* chargeCommitted(db)
        const pod = yield* startPod(1)
        yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
        // from here the test is the manager: it revokes and grants the shard of x (and later y) itself
        yield* stopManager
        const shard = shardOf(pod, "x")
        let n = 0
        while (shardOf(pod, `y${n}`) !== shard) n++
        const y = `y${n}`
        const shardSet = HashSet.make(ShardId.make(shard))
        const epoch = (yield* pod.sharding.servedShardEpochs).get(shard)!
        yield* pod.engine.start(new Shipment({ id: "x", amount: 1 }))
        yield* until(Effect.sync(() => runs.length === 1))
        // the first stop: x's charge is in flight
        reads.shard = shard
        const firstStop = yield* Effect.fork(pod.sharding.unassign(shardSet, new Map([[shard, epoch]])))
        yield* until(draining(1))
        // (the engine has looked at the pod's shards since: x's shard has left it. Otherwise, were the shard
        // back at the next epoch by its next look, it would stop x at once, as a run of an epoch gone)
        yield* until(Effect.sync(() => reads.without > 0))
        // the shard comes back at the next epoch; y starts there; it is revoked again: the second stop
        yield* pod.sharding.assign(shardSet, new Map([[shard, epoch + 1]]))
        yield* pod.engine.start(new Shipment({ id: y, amount: 2 }))
        yield* until(Effect.sync(() => runs.length === 2))
        const secondStop = yield* Effect.fork(pod.sharding.unassign(shardSet, new Map([[shard, epoch + 1]])))
        yield* until(draining(2))
        // x's charge ends (its result refused: the fence stands at the later epoch) and the first stop ends
        yield* gates.open("x")
        yield* Fiber.join(firstStop)
        expect(yield* committed("x")).toBe(false)
        // y's charge ends while the second stop still runs: its result is committed
        yield* gates.open(y)
        yield* until(committed(y), "10 seconds")
        yield* Fiber.join(secondStop)
        expect(runs).toEqual([{ id: "x", pod: 1 }, { id: y, pod: 1 }])
      }).pipe(Effect.provide(Logger.add(logger)))
    }, 90_000)

    it.scopedLive("a hand-off whose caller is interrupted (the manager gave up) drains on: the result is committed, the activity runs once", () => {
      const { logged, logger } = collecting()
      const draining = Effect.sync(() => logged.some((line) => line.includes("letting the activities of 1 executions finish")))
      return Effect.gen(function*() {
        const runs: Runs = []
        const gates = new Gates()
        const db = yield* database.make
        const { startPod, stopManager } = yield* makeEngineCluster(db, charging(runs, gates), {
          shardCheckInterval: "1 hour",
          shutdownGracePeriod: "30 seconds",
          entityTerminationTimeout: Duration.seconds(12),
          leaseDuration: Duration.seconds(30)
        })
        const committed = yield* chargeCommitted(db)
        const pod = yield* startPod(1)
        yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
        // from here the test is the manager
        yield* stopManager
        const shard = shardOf(pod, "x")
        const epoch = (yield* pod.sharding.servedShardEpochs).get(shard)!
        yield* pod.engine.start(new Shipment({ id: "x", amount: 1 }))
        yield* until(Effect.sync(() => runs.length === 1))
        const revocation = yield* Effect.fork(
          pod.sharding.unassign(HashSet.make(ShardId.make(shard)), new Map([[shard, epoch]]))
        )
        yield* until(draining)
        // the manager's call gives up: only its wait ends, the drain goes on (the shard still releasing)
        yield* Fiber.interrupt(revocation)
        expect((yield* pod.sharding.releasingShardEpochs).get(shard)).toBe(epoch)
        yield* gates.open("x")
        yield* until(committed("x"), "10 seconds")
        yield* until(Effect.map(pod.sharding.releasingShardEpochs, (releasing) => !releasing.has(shard)), "10 seconds")
        expect(runs).toEqual([{ id: "x", pod: 1 }])
      }).pipe(Effect.provide(Logger.add(logger)))
    }, 90_000)

    it.scopedLive("a revocation the manager gave up on (unassignTimeout) is not confirmed by the pod's heartbeats while its drain runs: each charge runs once", () =>
      Effect.gen(function*() {
        const runs: Runs = []
        const gates = new Gates()
        const db = yield* database.make
        const { startPod } = yield* makeEngineCluster(db, charging(runs, gates), {
          shardCheckInterval: "1 hour",
          shutdownGracePeriod: "30 seconds",
          entityTerminationTimeout: Duration.seconds(12),
          leaseDuration: Duration.seconds(30),
          unassignTimeout: Duration.millis(200)
        })
        const first = yield* startPod(1)
        yield* until(Effect.map(served(first), (shards) => shards.length === 30))
        const shipments = Array.from({ length: 12 }, (_, i) => new Shipment({ id: `w${i}`, amount: i }))
        for (const shipment of shipments) yield* first.engine.start(shipment)
        yield* until(Effect.sync(() => runs.length === shipments.length))
        // a second pod joins: the manager revokes half the shards from pod 1, whose engine drains their charges
        // (in flight until their gates open); the manager's call gives up after 200 ms (the shards stay pod 1's)
        const second = yield* startPod(2)
        yield* until(Effect.map(first.sharding.releasingShardEpochs, (releasing) => releasing.size > 0))
        // pod 1 renews its lease every 500 ms meanwhile: its heartbeats must not confirm the release
        yield* Effect.sleep("2 seconds")
        expect(yield* served(second)).toEqual([])
        expect(runs.every((run) => run.pod === 1)).toBe(true)
        for (const shipment of shipments) yield* gates.open(shipment.id)
        const results = yield* Effect.forEach(shipments, (shipment) =>
          first.engine.result(shipment.id, { timeout: "30 seconds" }))
        expect(results).toEqual(shipments.map((shipment) => Exit.succeed(shipment.amount)))
        // once the drain has returned, the release is confirmed and the shards move
        yield* until(Effect.map(served(second), (shards) => shards.length > 0), "20 seconds")
        expect(runs.map((run) => run.id).sort()).toEqual(shipments.map((shipment) => shipment.id).sort())
        expect(runs.every((run) => run.pod === 1)).toBe(true)
      }), 90_000)

    it.scopedLive("a stop that the pod's entityTerminationTimeout ends before its executions have left says so", () => {
      const { logged, logger } = collecting()
      return Effect.gen(function*() {
        const runs: Runs = []
        const gates = new Gates()
        const db = yield* database.make
        const { startPod } = yield* makeEngineCluster(db, stubbornCharging(runs, gates), {
          shardCheckInterval: "1 hour",
          // (a grace period not under the pod's entityTerminationTimeout: the timeout ends the drain)
          shutdownGracePeriod: "30 seconds",
          entityTerminationTimeout: Duration.seconds(1),
          leaseDuration: Duration.seconds(7)
        })
        const pod = yield* startPod(1)
        yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
        yield* pod.engine.start(new Shipment({ id: "x", amount: 1 }))
        yield* until(Effect.sync(() => runs.length === 1))
        const shard = shardOf(pod, "x")
        const epoch = (yield* pod.sharding.servedShardEpochs).get(shard)!
        // the revocation is confirmed after the timeout, charge still running here
        yield* pod.sharding.unassign(HashSet.make(ShardId.make(shard)), new Map([[shard, epoch]]))
        expect(logged.filter((line) => line.startsWith("the stop of shards this pod gives up ended"))).toEqual([
          "the stop of shards this pod gives up ended (its entityTerminationTimeout) while 1 of their executions " +
          "had not left: the pod confirms the release, and an activity of theirs still running here may run beside " +
          "its next run on the shard's new owner"
        ])
        yield* gates.open("x")
      }).pipe(Effect.provide(Logger.add(logger)))
    }, 90_000)
  })
}
