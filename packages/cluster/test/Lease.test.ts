import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
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
