// The pod leaving (unregister: stopEverything, then the manager is told) stops every entity first. A revocation
// arriving meanwhile (the manager rebalancing onto a pod that joined) found its shards no longer held and no stop
// of theirs registered (`stopping`: the leaving's stop is not), and returned at once: the manager's
// confirmation, while the entities' finalizers still ran here; the shard's next owner could start beside them.
import { ShardId } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, HashSet, Option, TestClock } from "effect"
import { settle } from "../utils/cluster.js"
import { onePodWithSlowEntities } from "../utils/slowEntity.js"

describe("a revocation that arrives while the pod leaves", () => {
  it.scoped("returns only once the shard's entities have stopped", () =>
    Effect.gen(function*() {
      const termination = 3_000
      const { a, epoch, startEntity, stopped } = yield* onePodWithSlowEntities(termination - 100)
      yield* startEntity
      const leaving = yield* Effect.fork(a.sharding.unregister)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(leaving))).toBe(true) // the finalizer runs
      const revocation = yield* Effect.fork(a.sharding.unassign(HashSet.make(ShardId.make(1)), new Map([[1, epoch]])))
      yield* settle
      const early = Option.isSome(yield* Fiber.poll(revocation))
      yield* TestClock.adjust(Duration.millis(termination))
      yield* settle
      yield* Fiber.join(revocation)
      yield* Fiber.join(leaving)
      expect({ early, stopped }).toEqual({ early: false, stopped: ["e"] })
    }))
})
