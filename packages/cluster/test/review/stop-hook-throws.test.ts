// A shard stop hook (`Sharding.registerShardStop`) that throws instead of returning an effect: the throw escaped
// the hook's own bound and error handling (attached to the effect it returns) and died the whole stop of the
// revoked shards at once, ending its wait for the entities' finalizers (they run on in the pod's fibers). The
// revocation failed with that defect, the shard was no longer marked as stopping, and the pod's next heartbeat
// confirmed its release while the finalizers still ran: the manager could give it to its next owner.
import { ShardId } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, HashSet, TestClock } from "effect"
import { settle } from "../utils/cluster.js"
import { onePodWithSlowEntities } from "../utils/slowEntity.js"

describe("a shard stop hook that throws", () => {
  it.scoped("does not end the revocation's stop before the entities have stopped", () =>
    Effect.gen(function*() {
      const termination = 3_000
      const { a, cluster, epoch, startEntity, stopped } = yield* onePodWithSlowEntities(termination - 100)
      yield* a.sharding.registerShardStop(() => {
        throw new Error("a bug in a stop hook (test)")
      })
      yield* startEntity
      // the manager revokes the shard (its call gives up, or fails): the stop runs on
      const revocation = yield* Effect.fork(a.sharding.unassign(HashSet.make(ShardId.make(1)), new Map([[1, epoch]])))
      yield* settle
      // the pod's next heartbeat, while the finalizer still runs, confirms nothing
      yield* a.sharding.assign(HashSet.empty())
      yield* settle
      const owners = (yield* cluster.managerInstance()!.getShardAssignments).map((assignment) =>
        `${assignment.pod?.port}@${assignment.epoch}`
      )
      const whileStopping = { stopped: [...stopped], owners }
      yield* TestClock.adjust(Duration.millis(termination))
      yield* settle
      const exit = yield* Fiber.await(revocation)
      expect({ whileStopping, stopped, confirmed: Exit.isSuccess(exit) }).toEqual({
        whileStopping: { stopped: [], owners: [`1@${epoch}`] },
        stopped: ["e"],
        confirmed: true
      })
    }))
})
