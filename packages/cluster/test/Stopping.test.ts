// Stop paths on the live clock (TestClock wakes equal deadlines in reverse registration order, so races between
// timeouts only show here). Issue 10 #2 and #3.
import {
  Sharding,
  ShardingConfig,
  ShardId
} from "@effect-cluster/cluster"
import { singlePod as singlePodWith } from "./utils/cluster.js"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, HashSet } from "effect"
import { Counter, counterBehaviour, freshId, GetCount } from "./utils/counter.js"

const singlePod = (config: Partial<ShardingConfig.ShardingConfig> = {}) =>
  singlePodWith({ entityTerminationTimeout: Duration.millis(100), ...config })

const log: Array<string> = []
// An entity whose finalizer takes `ms` (longer than entityTerminationTimeout when ms > 100), and whose
// messages take `messageMs`.
const slowFinalizer = (ms: number, messageMs = 0) =>
  Sharding.registerEntity(Counter)(counterBehaviour({
    onMessage: () => messageMs > 0 ? Effect.sleep(Duration.millis(messageMs)) : Effect.void,
    onStop: (entityId) =>
      Effect.sync(() => log.push(`finalizing ${entityId}`)).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(ms))),
        Effect.zipRight(Effect.sync(() => log.push(`finalized ${entityId}`)))
      )
  }))

const shardOf = (sharding: Sharding.Sharding, entityId: string) =>
  HashSet.make(ShardId.make(sharding.getShardId(entityId).value))

describe("stopping entities (live clock, issue 10 #2)", () => {
  it.live("a message and a finalizer that overrun entityTerminationTimeout: the scope is closed, the confirmation waits for it", () =>
    Effect.gen(function*() {
      log.length = 0
      yield* Sharding.registerScoped
      yield* slowFinalizer(200, 150)
      const sharding = yield* Sharding.Sharding
      const busy = yield* Effect.fork(sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() })))
      yield* Effect.sleep("20 millis")
      yield* sharding.unassign(shardOf(sharding, "e"))
      expect(log).toEqual(["finalizing e", "finalized e"])
      expect(yield* sharding.localEntityCount).toBe(0)
      expect(yield* Fiber.join(busy)).toBe(0) // the message was not interrupted: its sender got the reply
    }).pipe(Effect.scoped, Effect.provide(singlePod())))

  it.live("a hand-off whose caller is interrupted still stops the entity and runs its finalizer", () =>
    Effect.gen(function*() {
      log.length = 0
      yield* Sharding.registerScoped
      yield* slowFinalizer(80)
      const sharding = yield* Sharding.Sharding
      yield* sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      const handoff = yield* Effect.fork(sharding.unassign(shardOf(sharding, "e")))
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(handoff) // e.g. the manager stopped mid-rebalance
      expect(log).toEqual(["finalizing e"])
      while ((yield* sharding.localEntityCount) > 0) yield* Effect.sleep("10 millis")
      expect(log).toEqual(["finalizing e", "finalized e"])
    }).pipe(Effect.scoped, Effect.provide(singlePod())))
})

// Singletons and entities whose clean-up takes 80 ms (< entityTerminationTimeout = 100 ms): a stop that handles
// them one after another lets clean-ups start only after others finished.
const slowSingletons = (names: ReadonlyArray<string>) =>
  Effect.forEach(names, (name) =>
    Sharding.registerSingleton(
      name,
      Effect.acquireRelease(Effect.void, () =>
        Effect.sync(() => log.push(`stopping ${name}`)).pipe(
          Effect.zipRight(Effect.sleep("80 millis")),
          Effect.zipRight(Effect.sync(() => log.push(`stopped ${name}`)))
        )).pipe(Effect.zipRight(Effect.never), Effect.scoped)
    ), { discard: true })

const allStartedBeforeAnyEnded = (started: string, ended: string) => {
  const firstEnd = log.findIndex((line) => line.startsWith(ended))
  const starts = log.filter((line) => line.startsWith(started)).length
  const startsBeforeFirstEnd = log.slice(0, firstEnd).filter((line) => line.startsWith(started)).length
  return { starts, startsBeforeFirstEnd, ends: log.filter((line) => line.startsWith(ended)).length }
}

describe("stopping singletons with entities (live clock, issue 10 #3)", () => {
  it.live("shutdown stops every singleton and entity together and returns once all have stopped", () =>
    Effect.gen(function*() {
      log.length = 0
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      yield* slowSingletons(["s1", "s2", "s3", "s4"])
      yield* slowFinalizer(80)
      yield* Effect.sleep("20 millis")
      for (const id of ["e1", "e2"]) yield* sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
      yield* sharding.unregister
      const singletons = allStartedBeforeAnyEnded("stopping", "stopped")
      expect(singletons).toEqual({ starts: 4, startsBeforeFirstEnd: 4, ends: 4 })
      // the entities' finalizers started before the first singleton finished: one stop, not two in a row
      const entities = log.slice(0, log.findIndex((line) => line.startsWith("stopped")))
        .filter((line) => line.startsWith("finalizing")).length
      expect(entities).toBe(2)
      expect(log.filter((line) => line.startsWith("finalized")).length).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(singlePod())))

  it.live("a hand-off stops the shard's singletons together and confirms once they have stopped", () =>
    Effect.gen(function*() {
      log.length = 0
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const names = ["s1", "s2", "s3", "s4", "s5", "s6"]
      yield* slowSingletons(names)
      yield* Effect.sleep("20 millis")
      const shards = HashSet.fromIterable(names.map((name) => ShardId.make(sharding.getShardId(name).value)))
      yield* sharding.unassign(shards)
      expect(allStartedBeforeAnyEnded("stopping", "stopped")).toEqual({ starts: 6, startsBeforeFirstEnd: 6, ends: 6 })
    }).pipe(Effect.scoped, Effect.provide(singlePod())))
})
