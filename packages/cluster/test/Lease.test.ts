import { describe, expect, it } from "@effect/vitest"
import { Storage } from "@effect-cluster/cluster"
import { Clock, Duration, Effect, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "./utils/cluster.js"
import { Counter, freshId, GetCount } from "./utils/counter.js"
import { Observer } from "./utils/observer.js"

describe("a pod's lease (issue 10, also seen)", () => {
  it.scoped("honours a shorter lease granted by the manager: it renews in time and keeps its entities", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const cluster = yield* makeTestCluster({
        numberOfShards: 30,
        // the manager grants 9 s leases; the pod is configured for 30 s and renews every 10 s
        manager: { rebalanceRate: 1, leaseDuration: Duration.seconds(9), leaseMargin: Duration.seconds(2) },
        pod: { entityTerminationTimeout: Duration.seconds(1), entityMaxIdleTime: Duration.minutes(10) }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      yield* a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      }
      // never stopped for want of a renewal
      expect(observer.events).toEqual(["start e@1"])
    }))
})

describe("a pod that renews its leases in the database (Storage.PodLeases)", () => {
  it.scoped("keeps its shards and entities while the manager is stopped; once its database renewals fail, stops them at lease end from the last renewal's send", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      // The storage's "database clock" is the TestClock, as is the pod's monotonic clock.
      const storage = yield* Storage.makeMemory
      let failing = false
      let lastRenewalSentAt = -1
      const podLeases: Storage.LeasedStorage = {
        ...storage,
        renewShardLeases: (address, incarnation, held, leaseMillis) =>
          Effect.gen(function*() {
            const sentAt = yield* Clock.currentTimeMillis
            if (failing) return yield* new Storage.StorageException({ reason: "the database is unreachable" })
            const renewed = yield* storage.renewShardLeases(address, incarnation, held, leaseMillis)
            if (renewed.length === held.length) lastRenewalSentAt = sentAt
            return renewed
          })
      }
      const lease = 30_000
      const termination = 3_000
      const cluster = yield* makeTestCluster({
        numberOfShards: 30,
        storage,
        podLeases,
        manager: { rebalanceRate: 1 },
        pod: { entityMaxIdleTime: Duration.minutes(60) }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      yield* a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      yield* cluster.stopManager
      // Four leases without a manager: the pod renews in the database and keeps everything.
      for (let t = 0; t < 4 * lease / 1000; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      }
      yield* a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      expect(observer.events).toEqual(["start e@1"])
      expect(lastRenewalSentAt).toBeGreaterThan(3 * lease)
      // The database fails too: the pod holds its shards until the last successful renewal's send + lease,
      // and stops them (entities included) `entityTerminationTimeout` before that.
      failing = true
      const stopAt = lastRenewalSentAt + lease - termination
      const now = yield* Clock.currentTimeMillis
      yield* TestClock.adjust(Duration.millis(stopAt - 1 - now))
      yield* settle
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      expect(observer.events).toEqual(["start e@1"])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(0)
      expect(observer.events).toEqual(["start e@1", "stop e@1"])
    }))
})
