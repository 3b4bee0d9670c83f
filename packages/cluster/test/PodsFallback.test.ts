/**
 * A `Pods` layer with no registered sender (here: the in-process transport's `Pods`, copied into a new
 * object that counts its sends) reaches Sharding's fallback, `direct.sendThen(pods.sendAndGetState)`: sends
 * to an entity on another pod, and their typed failures, still work, through the layer's own
 * `sendAndGetState`.
 */
import {
  InProcessTransport,
  Pods,
  PodAddress,
  RecipientAddress,
  Serialization,
  Sharding,
  ShardingConfig,
  ShardManagerClient,
  ShardingException
} from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Counter, counterBehaviour, Fail, freshId, GetCount, Increment } from "./utils/counter.js"

const numberOfShards = 12

describe("Sharding with a Pods layer that registered no immediate sender", () => {
  it.scopedLive("sends to another pod go through the layer's sendAndGetState, replies and typed failures included", () =>
    Effect.gen(function*() {
      const cluster = yield* Layer.build(InProcessTransport.layerCluster({ numberOfShards }))
      const transport = Context.get(cluster, InProcessTransport.InProcessTransport)
      // The owner takes every shard first.
      const owner = yield* InProcessTransport.makePod(
        { numberOfShards, shardingPort: 1 },
        Sharding.registerEntity(Counter)(counterBehaviour())
      ).pipe(Effect.provide(cluster))
      let sends = 0
      const config = { numberOfShards, shardingPort: 2 }
      const self = PodAddress.make("localhost", 2)
      const registered = transport.podsFor(self)
      const counted: Pods.Pods = {
        ...registered,
        sendAndGetState: (pod, envelope) => Effect.suspend(() => {
          sends++
          return registered.sendAndGetState(pod, envelope)
        })
      }
      const clients = Context.make(Pods.Pods, counted).pipe(
        Context.add(ShardManagerClient.ShardManagerClient, transport.managerClientFor(self, "1.0.0"))
      )
      const context = yield* Layer.build(
        InProcessTransport.layerServePod.pipe(
          Layer.provideMerge(Sharding.live),
          Layer.provide(Layer.succeedContext(clients)),
          Layer.provide(Serialization.json),
          Layer.provide(ShardingConfig.withDefaults(config)),
          Layer.provide(Layer.succeedContext(cluster))
        )
      )
      const sender = Context.get(context, Sharding.Sharding)
      yield* sender.register
      yield* sender.heartbeat
      // An entity on the owner (the sender may have taken some shards by now).
      let id = ""
      for (let i = 0;; i++) {
        id = `x-${i}`
        if (yield* owner.isEntityOnLocalShards(RecipientAddress.makeRecipientAddress(Counter.name, id))) break
      }
      expect(yield* sender.isEntityOnLocalShards(RecipientAddress.makeRecipientAddress(Counter.name, id))).toBe(false)
      const messenger = sender.messenger(Counter)
      expect(yield* messenger.send(id)(new Increment({ messageId: freshId(), by: 3 }))).toBe(3)
      expect(yield* messenger.send(id)(new GetCount({ messageId: freshId() }))).toBe(3)
      expect(yield* Effect.flip(messenger.send(id)(new Fail({ messageId: freshId(), reason: "nope" })))).toBe("nope")
      yield* messenger.sendDiscard(id)(new Increment({ messageId: freshId(), by: 1 }))
      expect(yield* messenger.send(id)(new GetCount({ messageId: freshId() }))).toBe(4)
      expect(sends).toBe(5)
      const Unknown = { ...Counter, name: "Unknown" } as typeof Counter
      const error = yield* Effect.flip(sender.messenger(Unknown).send(id)(new GetCount({ messageId: freshId() })))
      expect((error as ShardingException.ShardingException)._tag).toBe("EntityTypeNotRegisteredException")
    }))
})
