// A grant that shows a shard this pod holds on another pod stops it as lost (applyGrant), in a fiber registered
// with the other stops, and the heartbeat joins that fiber. A stop that does not return (a stop hook stuck in an
// uninterruptible call: its entityTerminationTimeout cannot cut it short; an entity finalizer that hangs) kept
// the heartbeat waiting for ever: no more renewals, and the pod dropped every other shard at its lease end. The
// release of the lost shard waits for the stop (it is registered: `stopRunning`); the heartbeat need not.
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, TestClock } from "effect"
import { settle, twoPodsAndAMisdirectedShard } from "../utils/cluster.js"

describe("a lost shard's stop that never returns", () => {
  it.scoped("does not stop the pod's heartbeat: its other shards keep their lease", () =>
    Effect.gen(function*() {
      const { a, held, misdirect, shard } = yield* twoPodsAndAMisdirectedShard({
        numberOfShards: 30,
        manager: { rebalanceRate: 1 }
      })
      // pod 1's own work on that shard, stopped as lost, never returns (an uninterruptible call that hangs)
      // (it returns as the test ends, so that the pods can leave)
      const hang = yield* Deferred.make<void>()
      yield* Effect.addFinalizer(() => Deferred.succeed(hang, undefined))
      let entered = false
      yield* a.sharding.registerShardStop((shards, kind) =>
        shards.includes(shard) && kind === "lost"
          ? Effect.uninterruptible(Effect.zipRight(Effect.sync(() => void (entered = true)), Deferred.await(hang)))
          : Effect.void
      )
      // A misdirected push: pod 1 takes pod 2's shard at pod 2's epoch; its next grant stops it as lost.
      yield* misdirect
      expect(yield* held(a)).toContain(shard)
      yield* Effect.fork(a.sharding.heartbeat)
      yield* settle
      expect({ entered, lost: (yield* held(a)).includes(shard) }).toEqual({ entered: true, lost: false })
      // A minute on: pod 1 renews its lease every 10 s all along, and keeps its own 15 shards.
      const own = (yield* held(a)).length
      let fewest = own
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        fewest = Math.min(fewest, (yield* held(a)).length)
      }
      expect({ own, fewest }).toEqual({ own: 15, fewest: 15 })
    }))

  // entityTerminationTimeout 14 s fits the timing rule (less than lease 30 s - renewal 10 s - margin 5 s), and a
  // lost stop of 13.9 s is in time; but the heartbeat that waits for it sends its next renewal only 10 s later
  // still: past lease end - entityTerminationTimeout (16 s), when the watchdog drops every shard of the pod.
  it.scoped("a lost shard's stop within entityTerminationTimeout does not delay the next renewal past the lease", () =>
    Effect.gen(function*() {
      const termination = 14_000
      const { a, held, misdirect, shard } = yield* twoPodsAndAMisdirectedShard({
        numberOfShards: 30,
        manager: { rebalanceRate: 1 },
        pod: { entityTerminationTimeout: Duration.millis(termination) }
      })
      yield* a.sharding.registerShardStop((shards, kind) =>
        shards.includes(shard) && kind === "lost" ? Effect.sleep(Duration.millis(termination - 100)) : Effect.void
      )
      yield* misdirect
      // the heartbeat loop's own renewal applies the grant that shows the shard on pod 2
      let fewest = 15
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        fewest = Math.min(fewest, (yield* held(a)).filter((s) => s !== shard).length)
      }
      expect({ lost: (yield* held(a)).includes(shard), fewest }).toEqual({ lost: false, fewest: 15 })
    }))
})
