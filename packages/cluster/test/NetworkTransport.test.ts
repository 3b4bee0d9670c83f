import {
  PodAddress,
  RecipientAddress,
  Serialization,
  SerializedEnvelope,
  ShardAssignment,
  ShardId,
  Sharding,
  ShardingConfig,
  ShardingException
} from "@effect-cluster/cluster"
import { PodsRpc, ShardManagerClientRpc, Transport } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Either, Fiber, HashSet, Option, TestClock } from "effect"
import { Counter, CounterMessage, counterBehaviour, Fail, freshId, GetCount, Increment } from "./utils/counter.js"
import { balanced, blackHole, closedPort, entityOn, eventuallyLive, startManager, startPod } from "./utils/network.js"

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
      // The sender joins (without the entity type) and takes half the shards; its messages go to the other half.
      const sender = yield* startPod({ managerUri: manager.uri, sharding: { numberOfShards } })
      expect(owner.port).not.toBe(sender.port)
      yield* balanced([owner, sender], numberOfShards)
      const a = yield* entityOn(owner, Counter.name, "a")

      const messenger = sender.sharding.messenger(Counter)
      expect(yield* messenger.send(a)(new Increment({ messageId: freshId(), by: 2 }))).toBe(2)
      expect(yield* messenger.send(a)(new Increment({ messageId: freshId(), by: 3 }))).toBe(5)
      expect(yield* messenger.send(a)(new GetCount({ messageId: freshId() }))).toBe(5)
      // The entity's own typed failure (a string) crosses as the message's failure.
      expect(yield* Effect.flip(messenger.send(a)(new Fail({ messageId: freshId(), reason: "nope" })))).toBe("nope")
      expect(ranOn.length).toBe(4)
      expect(yield* sender.sharding.localEntityCount).toBe(0)

      // A type the owner does not know: its typed sharding error, through the wire.
      const Unknown = { ...Counter, name: "Unknown" } as typeof Counter
      const error = yield* Effect.flip(sender.sharding.messenger(Unknown).send(a)(new GetCount({ messageId: freshId() })))
      expect(ShardingException.isShardingException(error)).toBe(true)
      expect((error as ShardingException.ShardingException)._tag).toBe(
        "EntityTypeNotRegisteredException"
      )
    }))
})

const envelopeOf = (entityId: string, message: CounterMessage) =>
  SerializedEnvelope.make(
    RecipientAddress.makeRecipientAddress(Counter.name, entityId),
    message.messageId,
    Either.getOrThrow(Serialization.jsonEncode(Counter.schema, message))
  )

const podsWith = (transport: Partial<Transport.TransportConfig>) =>
  PodsRpc.make().pipe(Effect.provide(Transport.withDefaults(transport)))

// A hang detector, not a latency assertion: a bounded call returns long before it.
const returns = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => "the call hung" as const })

const unavailable = (error: unknown) => error as ShardingException.PodUnavailableException

describe("Network transport: every call is bounded", () => {
  it.scopedLive("a black-holed pod (accepts, never answers) fails sends, pings, assignments and unassignments in time", () =>
    Effect.gen(function*() {
      const hole = yield* blackHole
      const pods = yield* podsWith({
        sendTimeout: Duration.millis(300),
        callTimeout: Duration.millis(300),
        unassignTimeout: Duration.millis(400)
      })
      const pod = PodAddress.make("127.0.0.1", hole.port)
      const sent = yield* returns(Effect.flip(pods.sendAndGetState(pod, envelopeOf("a", new GetCount({ messageId: freshId() })))))
      expect(sent._tag).toBe("PodUnavailableException")
      // The TCP connection was made but the websocket never opened: nothing was written.
      expect(unavailable(sent).notDelivered).toBe(true)
      expect(ShardingException.deliveryOutcome(unavailable(sent))).toBe("NotDelivered")
      expect(hole.connections()).toBeGreaterThan(0)
      const shards = HashSet.make(ShardId.make(1))
      for (const call of [pods.ping(pod), pods.assignShards(pod, shards), pods.unassignShards(pod, shards)]) {
        const error = yield* returns(Effect.flip(call))
        expect(error._tag).toBe("PodUnavailableException")
      }
    }))

  it.scopedLive("a connection to a pod that never answered is closed after the failed call", () =>
    Effect.gen(function*() {
      const hole = yield* blackHole
      const pods = yield* podsWith({ callTimeout: Duration.millis(300) })
      const error = yield* returns(Effect.flip(pods.ping(PodAddress.make("127.0.0.1", hole.port))))
      expect(error._tag).toBe("PodUnavailableException")
      expect(hole.connections()).toBe(1)
      // Dropped at once, not left reconnecting: the peer sees its side closed.
      yield* eventuallyLive(Effect.sync(() => hole.open() === 0))
    }))

  it.scopedLive("a pod nobody listens on: the send certainly was not delivered", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const pods = yield* podsWith({ sendTimeout: Duration.seconds(5) })
      const error = yield* returns(
        Effect.flip(pods.sendAndGetState(PodAddress.make("127.0.0.1", port), envelopeOf("a", new GetCount({ messageId: freshId() }))))
      )
      expect(unavailable(error).notDelivered).toBe(true)
    }))

  it.scopedLive("a send that times out after it was written is outcome-unknown; the handler runs on and a retry gets its reply", () =>
    Effect.gen(function*() {
      const manager = yield* startManager({ manager: { numberOfShards } })
      const gate = yield* Deferred.make<void>()
      let runs = 0
      const owner = yield* startPod({
        managerUri: manager.uri,
        sharding: { numberOfShards },
        setup: Sharding.registerEntity(Counter)(counterBehaviour({
          onMessage: () => Effect.zipRight(Effect.sync(() => void runs++), Deferred.await(gate))
        }))
      })
      yield* eventuallyLive(holdsAll(owner.sharding))
      const pods = yield* podsWith({ sendTimeout: Duration.millis(300) })
      const envelope = envelopeOf("slow", new Increment({ messageId: freshId(), by: 7 }))
      const error = yield* returns(Effect.flip(pods.sendAndGetState(owner.sharding.podAddress, envelope)))
      expect(error._tag).toBe("PodUnavailableException")
      expect(unavailable(error).notDelivered).toBe(false)
      expect(ShardingException.deliveryOutcome(unavailable(error))).toBe("Unknown")
      // The caller gave up its wait; the handler was not interrupted and finishes once released.
      yield* Deferred.succeed(gate, undefined)
      yield* eventuallyLive(Effect.map(owner.sharding.localEntityCount, (n) => n === 1))
      const retried = yield* returns(pods.sendAndGetState(owner.sharding.podAddress, envelope))
      expect(retried._tag).toBe("@effect/cluster/MessageState/Processed")
      expect(runs).toBe(1)
      const count = yield* owner.sharding.messenger(Counter).send("slow")(new GetCount({ messageId: freshId() }))
      expect(count).toBe(7)
    }))

  const blackHoledManager = (port: number, leaseRenewalInterval: Duration.Duration, callTimeout: Duration.Duration) =>
    ShardManagerClientRpc.make.pipe(
      Effect.provide(Transport.withDefaults({ callTimeout })),
      Effect.provide(ShardingConfig.withDefaults({ shardManagerUri: `http://127.0.0.1:${port}`, leaseRenewalInterval }))
    )

  const heartbeatOf = (podAddress: PodAddress.PodAddress) =>
    new ShardAssignment.HeartbeatRequest({ podAddress, version: "1.0.0", released: [] })

  it.scopedLive("a black-holed manager: lease renewal fails within half the renewal interval, other calls within callTimeout", () =>
    Effect.gen(function*() {
      const hole = yield* blackHole
      const client = yield* blackHoledManager(hole.port, Duration.millis(600), Duration.millis(500))
      const self = PodAddress.make("127.0.0.1", 1)
      const renewal = yield* returns(Effect.flip(client.heartbeat(heartbeatOf(self))))
      expect(renewal._tag).toBe("ShardManagerUnavailableException")
      for (const call of [client.register(self), client.getShardAssignments, client.notifyUnhealthyPod(self)]) {
        const error = yield* returns(Effect.flip(call))
        expect(error._tag).toBe("ShardManagerUnavailableException")
      }
    }))

  it.scoped("lease renewal against a silent manager ends at half the renewal interval (TestClock)", () =>
    Effect.gen(function*() {
      const hole = yield* blackHole
      const client = yield* blackHoledManager(hole.port, Duration.seconds(3), Duration.seconds(2))
      const renewal = yield* Effect.fork(client.heartbeat(heartbeatOf(PodAddress.make("127.0.0.1", 1))))
      yield* eventuallyLive(Effect.sync(() => hole.connections() > 0))
      yield* TestClock.adjust("1499 millis")
      expect(Option.isNone(yield* Fiber.poll(renewal))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(renewal))
      expect(error._tag).toBe("ShardManagerUnavailableException")
    }))
})
