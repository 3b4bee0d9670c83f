import { Sharding, ShardingException } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Counter, counterBehaviour, Fail, freshId, GetCount, Increment } from "./utils/counter.js"
import { eventuallyLive, startManager, startPod } from "./utils/network.js"

const numberOfShards = 12

const holdsAll = (sharding: Sharding.Sharding) =>
  Effect.map(sharding.getAssignedShardIds, (shards) => shards.pipe((set) => Array.from(set).length === numberOfShards))

describe("Network transport (pods and manager in one process, real loopback sockets)", () => {
  it.scopedLive("sends to an entity on another pod; replies and typed errors are decoded with its schemas", () =>
    Effect.gen(function*() {
      const manager = yield* startManager({ manager: { numberOfShards } })
      const ranOn: Array<number> = []
      // The owner registers first and takes every shard; the sender joins after and owns none.
      const owner = yield* startPod({
        managerUri: manager.uri,
        sharding: { numberOfShards },
        setup: Sharding.registerEntity(Counter)(counterBehaviour({
          onMessage: () => Effect.sync(() => void ranOn.push(1))
        }))
      })
      yield* eventuallyLive(holdsAll(owner.sharding))
      const sender = yield* startPod({ managerUri: manager.uri, sharding: { numberOfShards } })
      expect(owner.port).not.toBe(sender.port)

      const messenger = sender.sharding.messenger(Counter)
      expect(yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 2 }))).toBe(2)
      expect(yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 3 }))).toBe(5)
      expect(yield* messenger.send("a")(new GetCount({ messageId: freshId() }))).toBe(5)
      // The entity's own typed failure (a string) crosses as the message's failure.
      expect(yield* Effect.flip(messenger.send("a")(new Fail({ messageId: freshId(), reason: "nope" })))).toBe("nope")
      expect(ranOn.length).toBe(4)
      expect(yield* sender.sharding.localEntityCount).toBe(0)

      // A type the owner does not know: its typed sharding error, through the wire.
      const Unknown = { ...Counter, name: "Unknown" } as typeof Counter
      const error = yield* Effect.flip(sender.sharding.messenger(Unknown).send("a")(new GetCount({ messageId: freshId() })))
      expect(ShardingException.isShardingException(error)).toBe(true)
      expect((error as ShardingException.ShardingException)._tag).toBe(
        "@effect-cluster/cluster/EntityTypeNotRegisteredException"
      )
    }))
})
