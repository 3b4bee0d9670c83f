import {
  ManagerConfig,
  MessageState,
  PoisonPill,
  PodAddress,
  RecipientAddress,
  RecipientType,
  Serialization,
  SerializedEnvelope,
  SerializedMessage,
  ShardingConfig,
  ShardingException
} from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Equal, Exit, Fiber, Hash, Layer, PrimaryKey, Queue, Schema } from "effect"
import { GetCount, Increment } from "./utils/counter.js"

describe("RecipientAddress", () => {
  it("is equal and hashes structurally over type name and entity id", () => {
    const a = RecipientAddress.makeRecipientAddress("Counter", "1")
    const b = RecipientAddress.makeRecipientAddress("Counter", "1")
    expect(Equal.equals(a, b)).toBe(true)
    expect(Hash.hash(a)).toBe(Hash.hash(b))
    expect(Equal.equals(a, RecipientAddress.makeRecipientAddress("Counter", "2"))).toBe(false)
    expect(RecipientAddress.isRecipientAddress(a)).toBe(true)
  })
})

describe("RecipientType", () => {
  it("compares by tag and name only", () => {
    const a = RecipientType.makeEntityType("X", Schema.String)
    const b = RecipientType.makeEntityType("X", Schema.Number)
    const topic = RecipientType.makeTopicType("X", Schema.String)
    expect(Equal.equals(a, b)).toBe(true)
    expect(Hash.hash(a)).toBe(Hash.hash(b))
    expect(Equal.equals(a, topic)).toBe(false)
    expect(RecipientType.isRecipientType(topic)).toBe(true)
  })
})

describe("SerializedEnvelope", () => {
  it.effect("round-trips through JSON with its epoch and has the 2024 primary key", () =>
    Effect.gen(function*() {
      const envelope = SerializedEnvelope.make(
        RecipientAddress.makeRecipientAddress("Counter", "7"),
        "msg-1",
        SerializedMessage.make("{}"),
        4
      )
      expect(PrimaryKey.value(envelope)).toBe("msg-1@Counter#7")
      const json = yield* Schema.encode(Schema.parseJson(SerializedEnvelope.schema))(envelope)
      const back = yield* Schema.decode(Schema.parseJson(SerializedEnvelope.schema))(json)
      expect(back.epoch).toBe(4)
      expect(Equal.equals(back, envelope)).toBe(true)
      // An envelope from a sender that does not know epochs decodes with epoch 0.
      const legacy = yield* Schema.decodeUnknown(SerializedEnvelope.schema)({
        recipientAddress: { recipientTypeName: "Counter", entityId: "7" },
        messageId: "x",
        body: { value: "{}" }
      })
      expect(legacy.epoch).toBe(0)
    }))
})

describe("PodAddress", () => {
  it("prints host:port", () => {
    expect(String(PodAddress.make("h", 1))).toBe("PodAddress(h:1)")
  })
})

describe("MessageState", () => {
  it.effect("matches, maps and round-trips through its schema", () =>
    Effect.gen(function*() {
      const processed = MessageState.Processed(1)
      expect(MessageState.isMessageState(processed)).toBe(true)
      expect(MessageState.isMessageState({ _tag: "other" })).toBe(false)
      expect(MessageState.match({ onAcknowledged: () => "ack", onProcessed: (p) => `p${p.result}` })(processed)).toBe("p1")
      expect(yield* MessageState.mapEffect(processed, (n) => Effect.succeed(n + 1))).toEqual(MessageState.Processed(2))
      expect(yield* MessageState.mapEffect(MessageState.Acknowledged, (n: number) => Effect.succeed(n + 1))).toEqual(
        MessageState.Acknowledged
      )
      const schema = Schema.parseJson(MessageState.schema(Schema.NumberFromString))
      expect(yield* Schema.decode(schema)(yield* Schema.encode(schema)(processed))).toEqual(processed)
      expect(yield* Schema.decode(schema)(yield* Schema.encode(schema)(MessageState.Acknowledged))).toEqual(
        MessageState.Acknowledged
      )
    }))
})

describe("ShardingException", () => {
  it.effect("round-trips every error through its schema, keeping SerializationException's message", () =>
    Effect.gen(function*() {
      const schema = Schema.parseJson(ShardingException.schema)
      const error = new ShardingException.SerializationException({ error: "bad field x", stage: "reply" })
      const back = yield* Schema.decode(schema)(yield* Schema.encode(schema)(error))
      expect(back).toBeInstanceOf(ShardingException.SerializationException)
      expect((back as ShardingException.SerializationException).error).toBe("bad field x")
      expect(ShardingException.isShardingException(back)).toBe(true)
      expect(ShardingException.isShardingException(new Error("x"))).toBe(false)
    }))

  it("says whether a failed message was delivered", () => {
    const address = RecipientAddress.makeRecipientAddress("T", "1")
    const pod = PodAddress.make("h", 1)
    expect(ShardingException.deliveryOutcome(new ShardingException.EntityNotManagedByThisPodException({ recipientAddress: address })))
      .toBe("NotDelivered")
    expect(ShardingException.deliveryOutcome(new ShardingException.MailboxFullException({ recipientAddress: address, capacity: 1 })))
      .toBe("NotDelivered")
    expect(ShardingException.deliveryOutcome(new ShardingException.PodUnavailableException({ podAddress: pod }))).toBe("Unknown")
    expect(
      ShardingException.deliveryOutcome(
        new ShardingException.MessageOutcomeUnknownException({ recipientAddress: address, attempts: 2, reason: "" })
      )
    ).toBe("Unknown")
    expect(ShardingException.deliveryOutcome(new ShardingException.ExceptionWhileOfferingMessageException({ error: "" })))
      .toBe("Delivered")
    expect(ShardingException.deliveryOutcome(new ShardingException.SerializationException({ error: "", stage: "request" })))
      .toBe("NotDelivered")
    expect(ShardingException.deliveryOutcome(new ShardingException.SerializationException({ error: "", stage: "reply" })))
      .toBe("Delivered")
  })
})

describe("PoisonPill", () => {
  it.effect("takeOrInterrupt returns messages and interrupts on a PoisonPill", () =>
    Effect.gen(function*() {
      const queue = yield* Queue.unbounded<string | PoisonPill.PoisonPill>()
      yield* Queue.offer(queue, "hello")
      expect(yield* PoisonPill.takeOrInterrupt(queue)).toBe("hello")
      yield* Queue.offer(queue, yield* PoisonPill.make)
      const fiber = yield* Effect.fork(PoisonPill.takeOrInterrupt(queue))
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
    }))
})

describe("Serialization.json", () => {
  it.effect("encodes through the schema and fails typed on bad input", () =>
    Effect.gen(function*() {
      const serialization = yield* Serialization.Serialization
      const message = new Increment({ messageId: "a", by: 3 })
      const body = yield* serialization.encode(Increment, message)
      expect(JSON.parse(body.value)).toEqual({ _tag: "Increment", messageId: "a", by: 3 })
      const back = yield* serialization.decode(Increment, body)
      expect(back).toBeInstanceOf(Increment)
      expect(PrimaryKey.value(back)).toBe("a")
      const notJson = yield* Effect.flip(serialization.decode(Increment, SerializedMessage.make("{oops")))
      expect(notJson._tag).toBe("SerializationException")
      expect(notJson.error).toContain("invalid JSON")
      const wrong = yield* Effect.flip(serialization.decode(GetCount, SerializedMessage.make("{\"_tag\":\"Nope\"}")))
      expect(wrong.error.length).toBeGreaterThan(0)
    }).pipe(Effect.provide(Serialization.json)))
})

describe("ShardingConfig", () => {
  it.effect("has the documented defaults and reads overrides from config", () =>
    Effect.gen(function*() {
      const defaults = yield* ShardingConfig.ShardingConfig.pipe(Effect.provide(ShardingConfig.defaults))
      expect(defaults.numberOfShards).toBe(300)
      expect(Duration.toMillis(defaults.entityMaxIdleTime)).toBe(60_000)
      expect(Duration.toMillis(defaults.entityTerminationTimeout)).toBe(3_000)
      expect(Duration.toMillis(defaults.leaseDuration)).toBe(30_000)
      const read = yield* ShardingConfig.ShardingConfig.pipe(
        Effect.provide(
          ShardingConfig.fromConfig.pipe(
            Layer.provide(Layer.setConfigProvider(
              ConfigProvider.fromMap(new Map([["NUMBER_OF_SHARDS", "30"], ["ENTITY_MAX_IDLE_TIME", "500"], ["PORT", "9"]]))
            ))
          )
        )
      )
      expect(read.numberOfShards).toBe(30)
      expect(read.shardingPort).toBe(9)
      expect(Duration.toMillis(read.entityMaxIdleTime)).toBe(500)
      expect(Duration.toMillis(read.leaseRenewalInterval)).toBe(10_000)
      const custom = yield* ShardingConfig.ShardingConfig.pipe(
        Effect.provide(ShardingConfig.withDefaults({ numberOfShards: 7 }))
      )
      expect(custom.numberOfShards).toBe(7)
      expect(custom.selfHost).toBe("localhost")
    }))

  it.effect("checks the lease timing rules", () =>
    Effect.gen(function*() {
      const base = ShardingConfig.defaultValues
      yield* ShardingConfig.validate(base)
      const slowRenewal = yield* Effect.flip(
        ShardingConfig.validate({ ...base, leaseRenewalInterval: Duration.seconds(11) })
      )
      expect(slowRenewal.reason).toContain("leaseRenewalInterval")
      const longTermination = yield* Effect.flip(
        ShardingConfig.validate({ ...base, entityTerminationTimeout: Duration.seconds(15) })
      )
      expect(longTermination.reason).toContain("entityTerminationTimeout")
      yield* ShardingConfig.validate({ ...base, entityTerminationTimeout: Duration.millis(14_999) })
    }))
})

describe("ManagerConfig", () => {
  it.effect("has the documented defaults and validates", () =>
    Effect.gen(function*() {
      const config = yield* ManagerConfig.ManagerConfig.pipe(Effect.provide(ManagerConfig.defaults))
      expect(config.rebalanceRate).toBe(0.02)
      expect(Duration.toMillis(config.rebalanceInterval)).toBe(20_000)
      expect(Duration.toMillis(config.leaseMargin)).toBe(500)
      const bad = yield* Effect.flip(ManagerConfig.validate({ ...config, rebalanceRate: 0 }))
      expect(bad.reason).toContain("rebalanceRate")
      const read = yield* ManagerConfig.ManagerConfig.pipe(
        Effect.provide(
          ManagerConfig.fromConfig.pipe(
            Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["REBALANCE_RATE", "0.5"]]))))
          )
        )
      )
      expect(read.rebalanceRate).toBe(0.5)
    }))
})
