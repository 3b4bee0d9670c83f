// Issue 10 review (#3, "singletons are at most one at a time"): a singleton stopped for a lease the pod could
// not renew is still running its finalizers when the pod renews again and the manager's grant gives the shard
// back. `Singletons.sync` forgets the stopping fiber (`singleton.fiber = undefined`) before it has ended, so the
// grant starts a second copy beside the first one's clean-up.
import { Sharding } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashSet, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "../utils/cluster.js"

describe("a singleton stopped for a lost lease and granted back", () => {
  it.scoped("never runs twice at once (the old copy's finalizer is still running)", () =>
    Effect.gen(function*() {
      let alive = 0
      let maxAlive = 0
      let starts = 0
      // the clean-up takes 2 s, within entityTerminationTimeout (3 s); the test's end lets any left finish
      let ended = false
      const singleton = Sharding.registerSingleton(
        "leader",
        Effect.acquireRelease(
          Effect.sync(() => {
            starts++
            alive++
            maxAlive = Math.max(maxAlive, alive)
          }),
          () =>
            Effect.zipRight(
              Effect.suspend(() => ended ? Effect.void : Effect.sleep("2 seconds")),
              Effect.sync(() => alive--)
            )
        ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
      )
      const cluster = yield* makeTestCluster({ numberOfShards: 10, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, singleton)
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 10))
      yield* settle
      expect({ starts, alive }).toEqual({ starts: 1, alive: 1 })
      // the manager is unreachable: the pod cannot renew, and its watchdog stops everything before the lease ends
      yield* cluster.transport.partitionFromManager(a.address)
      while (Array.from(yield* a.sharding.getAssignedShardIds).length > 0) {
        yield* TestClock.adjust("500 millis")
        yield* settle
      }
      expect(alive).toBe(1) // the singleton is in its 2 s clean-up
      // the manager is reachable again before its lease + margin ran out: it still assigns the shards to this pod
      yield* cluster.transport.heal(a.address)
      yield* a.sharding.assign(HashSet.empty()) // renew now
      yield* settle
      for (let t = 0; t < 10; t++) {
        yield* TestClock.adjust("500 millis")
        yield* settle
      }
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(10)
      const result = { starts, alive, maxAlive }
      ended = true
      expect(result).toEqual({ starts: 2, alive: 1, maxAlive: 1 })
    }))
})
