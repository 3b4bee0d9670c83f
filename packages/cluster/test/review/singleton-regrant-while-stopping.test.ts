// Issue 10 review (#3, "singletons are at most one at a time"): a singleton stopped for a lease the pod could
// not renew is still running its finalizers when the pod renews again and the manager's grant gives the shard
// back. `Singletons.sync` forgets the stopping fiber (`singleton.fiber = undefined`) before it has ended, so the
// grant starts a second copy beside the first one's clean-up.
import { Sharding } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, HashSet, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "../utils/cluster.js"
import { eventuallyLive } from "../utils/network.js"

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

  it.live("never runs twice at once, on the live clock (the old copy's finalizer held until the shard is back)", () =>
    Effect.gen(function*() {
      let alive = 0
      let maxAlive = 0
      let starts = 0
      const cleaning = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const singleton = Sharding.registerSingleton(
        "leader",
        Effect.acquireRelease(
          Effect.sync(() => {
            starts++
            alive++
            maxAlive = Math.max(maxAlive, alive)
          }),
          // The clean-up goes on until the test releases it (a finalizer is never cut short).
          () =>
            Deferred.succeed(cleaning, undefined).pipe(
              Effect.zipRight(Deferred.await(release)),
              Effect.zipRight(Effect.sync(() => alive--))
            )
        ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
      )
      // Short leases on the live clock; the manager's margin leaves the pod registered well past its stop.
      const cluster = yield* makeTestCluster({
        numberOfShards: 10,
        manager: { rebalanceRate: 1, leaseDuration: Duration.millis(1500), leaseMargin: Duration.seconds(5) },
        pod: {
          leaseDuration: Duration.millis(1500),
          leaseRenewalInterval: Duration.millis(300),
          leaseMargin: Duration.millis(500),
          entityTerminationTimeout: Duration.millis(600)
        }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, singleton)
      // Runs before the cluster's own finalizers: a failing assertion never leaves the clean-up held.
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      const held = Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length)
      yield* eventuallyLive(Effect.map(held, (n) => n === 10 && starts === 1))
      // Cut off from the manager, the pod's watchdog stops everything before its lease ends.
      yield* cluster.transport.partitionFromManager(a.address)
      yield* eventuallyLive(Effect.map(held, (n) => n === 0))
      yield* Deferred.await(cleaning)
      expect({ starts, alive }).toEqual({ starts: 1, alive: 1 })
      // Reachable again: the renewal gives the shards back while the old copy still cleans up.
      yield* cluster.transport.heal(a.address)
      yield* a.sharding.assign(HashSet.empty()) // renew now
      expect(yield* held).toBe(10)
      expect({ starts, alive }).toEqual({ starts: 1, alive: 1 })
      // Once the old copy has ended, the new one starts.
      yield* Deferred.succeed(release, undefined)
      yield* eventuallyLive(Effect.sync(() => starts === 2))
      expect({ starts, alive, maxAlive }).toEqual({ starts: 2, alive: 1, maxAlive: 1 })
    }).pipe(Effect.scoped), { timeout: 30_000 })
})
