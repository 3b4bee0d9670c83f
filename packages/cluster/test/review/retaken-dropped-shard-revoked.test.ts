// The lease watchdog drops a shard whose lease is about to end unrenewed (its stop, lost, runs on in a fiber
// registered in the `stopping` map). The manager, reachable again before the lease + margin ran out, still has
// the shard on the pod: the next grant gives it back at the same epoch (the drop released nothing), so the pod
// holds it again while the drop's stop still runs. The manager then revokes it: the revocation is the pod's
// confirmation (the manager gives the shard to its next owner as the call returns), so it must wait for every
// stop of the shard still running here, the drop's too (its stop hooks, its singletons' clean-up), not only for
// its own.
import { Sharding, ShardId } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, HashSet, Option, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "../utils/cluster.js"

const termination = 3_000 // entityTerminationTimeout (the test cluster's)

describe("a shard the watchdog dropped, granted back, then revoked while the drop's stop runs", () => {
  it.scoped("the revocation returns only once the drop's stop hook has returned", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 1, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      const held = Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s, (id) => id.value))
      yield* eventually(Effect.map(held, (shards) => shards.length === 1))
      const epoch = (yield* a.sharding.servedShardEpochs).get(1)!
      // the pod's own work on the shard takes 2.9 s to stop when lost (within entityTerminationTimeout)
      const hook: Array<string> = []
      yield* a.sharding.registerShardStop((shards, kind) =>
        shards.includes(1) && kind === "lost"
          ? Effect.sleep(Duration.millis(termination - 100)).pipe(
            Effect.zipRight(Effect.sync(() => void hook.push("lost stop returned")))
          )
          : Effect.void
      )
      // last renewal now; then the manager is unreachable: the watchdog drops the shard at 27 s
      yield* a.sharding.assign(HashSet.empty())
      yield* cluster.transport.partitionFromManager(a.address)
      yield* TestClock.adjust(Duration.millis(30_000 - termination))
      yield* settle
      expect(yield* held).toEqual([])
      // reachable again: the grant gives the shard back at the same epoch, the drop's hook still running
      yield* cluster.transport.heal(a.address)
      yield* a.sharding.assign(HashSet.empty())
      yield* settle
      expect(yield* held).toEqual([1])
      expect((yield* a.sharding.servedShardEpochs).get(1)).toBe(epoch)
      expect(hook).toEqual([])
      // the manager revokes it: the call must not return (confirm) while the drop's hook runs
      const revocation = yield* Effect.fork(a.sharding.unassign(HashSet.make(ShardId.make(1)), new Map([[1, epoch]])))
      yield* settle
      const early = Option.isSome(yield* Fiber.poll(revocation))
      yield* TestClock.adjust(Duration.millis(termination))
      yield* settle
      yield* Fiber.join(revocation)
      expect({ early, hook }).toEqual({ early: false, hook: ["lost stop returned"] })
    }))

  it.scoped("the revocation returns only once the dropped singleton's clean-up has ended", () =>
    Effect.gen(function*() {
      let alive = 0
      let cleanups = 0
      let ended = false
      const singleton = Sharding.registerSingleton(
        "leader",
        Effect.acquireRelease(
          Effect.sync(() => void alive++),
          () =>
            Effect.zipRight(
              Effect.suspend(() => ended ? Effect.void : Effect.sleep(Duration.millis(termination - 100))),
              Effect.sync(() => {
                alive--
                cleanups++
              })
            )
        ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
      )
      const cluster = yield* makeTestCluster({ numberOfShards: 1, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, singleton)
      const held = Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s, (id) => id.value))
      yield* eventually(Effect.map(held, (shards) => shards.length === 1))
      yield* settle
      expect(alive).toBe(1)
      const epoch = (yield* a.sharding.servedShardEpochs).get(1)!
      yield* a.sharding.assign(HashSet.empty())
      yield* cluster.transport.partitionFromManager(a.address)
      yield* TestClock.adjust(Duration.millis(30_000 - termination))
      yield* settle
      expect(yield* held).toEqual([])
      expect(alive).toBe(1) // in its clean-up
      yield* cluster.transport.heal(a.address)
      yield* a.sharding.assign(HashSet.empty())
      yield* settle
      expect(yield* held).toEqual([1])
      const revocation = yield* Effect.fork(a.sharding.unassign(HashSet.make(ShardId.make(1)), new Map([[1, epoch]])))
      yield* settle
      // returned (confirmed: the singleton may start on the next owner) while the old copy still cleans up?
      const early = Option.isSome(yield* Fiber.poll(revocation)) && alive > 0
      yield* TestClock.adjust(Duration.millis(termination))
      yield* settle
      yield* Fiber.join(revocation)
      const result = { early, cleanups }
      ended = true
      expect(result).toEqual({ early: false, cleanups: 1 })
    }))
})
