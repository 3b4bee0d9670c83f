// The lease watchdog drops a shard whose lease is about to end unrenewed: it stops being held at once, and its
// stop (entities' finalizers, bounded by entityTerminationTimeout) runs in a fiber of its own, not marked as
// releasing. Revoked then (the manager reachable again, rebalancing onto a pod that joined), the shard is
// released at the epoch revoked while that stop runs; the manager's call gives up after its unassignTimeout
// (the revocation waits for the drop's stop) and keeps the shard with the pod. Listed as released by the pod's
// next heartbeat, the shard would go to its next owner at once, beside the finalizers still running here.
import { Sharding } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, HashSet, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "../utils/cluster.js"
import { Counter, counterBehaviour, freshId, GetCount } from "../utils/counter.js"
import { Observer } from "../utils/observer.js"

describe("a shard the watchdog dropped, revoked while its stop runs", () => {
  it.scoped("is confirmed released (and moves) only once the drop's stop has returned", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const termination = 3_000 // entityTerminationTimeout (the cluster's)
      // Entities whose finalizer takes 2.9 s, just within entityTerminationTimeout (stopped when it has ended).
      const slowCounterOn = (pod: number) =>
        Sharding.registerEntity(Counter)(counterBehaviour({
          onStart: (entityId) => Effect.sync(() => observer.start(pod, entityId)),
          onStop: (entityId) =>
            Effect.zipRight(
              Effect.sleep(Duration.millis(termination - 100)),
              Effect.sync(() => observer.stop(pod, entityId))
            )
        }))
      const cluster = yield* makeTestCluster({
        numberOfShards: 2,
        manager: { rebalanceRate: 1 },
        // as over the network: the manager's revocation call gives up after 1 s (the shard stays the pod's)
        unassignTimeout: Duration.seconds(1),
        pod: { entityMaxIdleTime: Duration.minutes(10) }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, slowCounterOn(1))
      const held = (pod: typeof a) =>
        Effect.map(pod.sharding.getAssignedShardIds, (s) => Array.from(s, (id) => id.value))
      yield* eventually(Effect.map(held(a), (shards) => shards.length === 2))
      // an entity on each shard: whichever shard the manager moves has one whose finalizer is slow
      const shardOf = (entityId: string) => a.sharding.getShardId(entityId).value
      let other = "y0"
      for (let i = 1; shardOf(other) === shardOf("x"); i++) other = `y${i}`
      const ids = ["x", other]
      for (const id of ids) yield* a.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
      // The pod's last renewal is now (lease end: 30 s from now); then it cannot reach the manager, and its
      // watchdog drops both shards at lease end − entityTerminationTimeout (27 s): the finalizers begin.
      yield* a.sharding.assign(HashSet.empty())
      yield* cluster.transport.partitionFromManager(a.address)
      yield* TestClock.adjust(Duration.millis(30_000 - termination))
      yield* settle
      expect(yield* held(a)).toEqual([])
      expect(ids.flatMap((id) => observer.where(id))).toEqual([1, 1]) // still finalizing
      // The manager is reachable again (within its lease + margin, it still counts the shards as the pod's), and a
      // second pod joins: the manager revokes a shard from the first; the pod's revocation waits for the drop's
      // stop, the manager's call gives up after 1 s.
      yield* cluster.transport.heal(a.address)
      const b = yield* cluster.startPod(2, observer.counterOn(2))
      yield* settle
      yield* TestClock.adjust("1100 millis")
      yield* settle
      const owners = yield* cluster.managerInstance()!.getShardAssignments
      expect(owners.map((assignment) => assignment.pod?.port)).toEqual([1, 1]) // (the call failed)
      // While the finalizers still run here, the first pod's heartbeats, and the second's, move nothing.
      // (checked once they have ended: a test that fails while they run would wait for them on the TestClock)
      const heldByBWhileStopping = new Set<number>()
      while (ids.some((id) => observer.where(id).includes(1))) {
        yield* a.sharding.assign(HashSet.empty()) // renew now
        yield* settle
        yield* b.sharding.assign(HashSet.empty())
        yield* settle
        for (const shard of yield* held(b)) {
          if (heldByBWhileStopping.has(shard)) continue
          heldByBWhileStopping.add(shard)
          // its entity, asked for there, starts beside the finalizer still running here
          const id = ids.find((id) => shardOf(id) === shard)!
          yield* b.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
        }
        yield* TestClock.adjust("200 millis")
        yield* settle
      }
      expect({ heldByB: Array.from(heldByBWhileStopping), violations: observer.violations }).toEqual({
        heldByB: [],
        violations: []
      })
      // Once they have returned, the next heartbeat confirms the release, and the shard moves.
      yield* a.sharding.assign(HashSet.empty())
      yield* settle
      yield* b.sharding.assign(HashSet.empty())
      yield* settle
      const moved = yield* held(b)
      expect(moved.length).toBe(1)
      const id = ids.find((id) => shardOf(id) === moved[0])!
      yield* b.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
      expect(observer.where(id)).toEqual([2])
      expect(observer.violations).toEqual([])
    }))
})
