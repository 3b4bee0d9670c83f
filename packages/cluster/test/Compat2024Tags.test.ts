/**
 * The `_tag` strings of 2024 (../shared/reference/api-2024.md): a 2024 program that only renamed its imports
 * still catches our errors with `Effect.catchTag("<2024 tag>")` and still compares `_tag`s with the 2024
 * literals. The literals are written out here on purpose: if a tag drifts, `catchTag` stops compiling
 * (the root typecheck covers this file) and the `_tag` checks fail.
 */
import * as MessageState from "@effect-cluster/cluster/MessageState"
import * as Pods from "@effect-cluster/cluster/Pods"
import * as PodsHealth from "@effect-cluster/cluster/PodsHealth"
import * as PoisonPill from "@effect-cluster/cluster/PoisonPill"
import * as PodAddress from "@effect-cluster/cluster/PodAddress"
import * as RecipientAddress from "@effect-cluster/cluster/RecipientAddress"
import * as Serialization from "@effect-cluster/cluster/Serialization"
import * as Sharding from "@effect-cluster/cluster/Sharding"
import * as ShardingConfig from "@effect-cluster/cluster/ShardingConfig"
import * as ShardingException from "@effect-cluster/cluster/ShardingException"
import * as ShardManagerClient from "@effect-cluster/cluster/ShardManagerClient"
import * as Storage from "@effect-cluster/cluster/Storage"
import * as SerializedMessage from "@effect-cluster/cluster/SerializedMessage"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Counter, freshId, GetCount } from "./utils/counter.js"

const singlePod = Sharding.live.pipe(
  Layer.provide(Pods.noop),
  Layer.provide(ShardManagerClient.local),
  Layer.provide(Serialization.json),
  Layer.provide(ShardingConfig.withDefaults({})),
  Layer.provide(Layer.mergeAll(PodsHealth.noop, Storage.memory))
)

const pod = PodAddress.make("localhost", 1)

// Each ShardingException class with the exact `_tag` of 2024 (errors added since then use the bare class name,
// the style of most 2024 tags).
const expectedTags: ReadonlyArray<readonly [{ readonly _tag: string }, string]> = [
  [
    new ShardingException.EntityNotManagedByThisPodException({
      recipientAddress: RecipientAddress.makeRecipientAddress("Counter", "1")
    }),
    "@effect/cluster/EntityNotManagedByThisPodException"
  ],
  [
    new ShardingException.EntityTypeNotRegisteredException({ entityType: "Counter", podAddress: pod }),
    "EntityTypeNotRegisteredException"
  ],
  [new ShardingException.NoResultInProcessedMessageStateException({}), "NoResultInProcessedMessageStateException"],
  [new ShardingException.PodNoLongerRegisteredException({ podAddress: pod }), "PodNoLongerRegisteredException"],
  [new ShardingException.PodUnavailableException({ podAddress: pod }), "PodUnavailableException"],
  [new ShardingException.SerializationException({ error: "bad" }), "SerializationException"],
  [new ShardingException.ExceptionWhileOfferingMessageException({}), "ExceptionWhileOfferingMessageException"]
]

describe("2024 tag strings", () => {
  it("every 2024 ShardingException keeps its 2024 _tag, also in its encoded form", () => {
    for (const [error, tag] of expectedTags) {
      expect(error._tag).toBe(tag)
      const encoded = Schema.encodeUnknownSync(ShardingException.schema)(error) as { readonly _tag: string }
      expect(encoded._tag).toBe(tag)
    }
  })

  it.scoped("a 2024 program catches a real send failure with catchTag(\"EntityTypeNotRegisteredException\")", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      const messenger = yield* Sharding.messenger(Counter)
      const caught = yield* messenger.send("e1")(new GetCount({ messageId: freshId() })).pipe(
        Effect.as("sent"),
        Effect.catchTag("EntityTypeNotRegisteredException", (error) => Effect.succeed(`caught ${error.entityType}`))
      )
      expect(caught).toBe("caught Counter")
    }).pipe(Effect.provide(singlePod)))

  it.effect("a 2024 program catches each ShardingException by its 2024 tag", () =>
    Effect.gen(function*() {
      const recover = (failure: Effect.Effect<never, ShardingException.ShardingException>) =>
        failure.pipe(
          Effect.catchTags({
            "@effect/cluster/EntityNotManagedByThisPodException": () => Effect.succeed("not managed"),
            EntityTypeNotRegisteredException: () => Effect.succeed("not registered"),
            NoResultInProcessedMessageStateException: () => Effect.succeed("no result"),
            PodNoLongerRegisteredException: () => Effect.succeed("no longer registered"),
            PodUnavailableException: (error) => Effect.succeed(`unavailable ${error.podAddress.port}`),
            SerializationException: () => Effect.succeed("serialization"),
            ExceptionWhileOfferingMessageException: () => Effect.succeed("offering")
          }),
          // Any other member of the union (errors added since 2024) is not what this program expects.
          Effect.catchAll((other) => Effect.succeed(`unexpected ${other._tag}`))
        )
      const results: Array<string> = []
      for (const [error] of expectedTags) {
        results.push(yield* recover(Effect.fail(error as ShardingException.ShardingException)))
      }
      expect(results).toEqual([
        "not managed",
        "not registered",
        "no result",
        "no longer registered",
        "unavailable 1",
        "serialization",
        "offering"
      ])
    }))

  it("errors added since 2024 use their bare class names as tags", () => {
    expect(ShardingException.ShardManagerUnavailableException._tag).toBe("ShardManagerUnavailableException")
    expect(ShardingException.MailboxFullException._tag).toBe("MailboxFullException")
    expect(ShardingException.EntityCapacityExceededException._tag).toBe("EntityCapacityExceededException")
    expect(ShardingException.MessageNotDeliveredException._tag).toBe("MessageNotDeliveredException")
    expect(ShardingException.MessageOutcomeUnknownException._tag).toBe("MessageOutcomeUnknownException")
    expect(ShardingException.InvalidConfigurationException._tag).toBe("InvalidConfigurationException")
    expect(Storage.StorageException._tag).toBe("StorageException")
  })

  it("MessageState keeps the 2024 tags, decoded and encoded", () => {
    const processed = MessageState.Processed(SerializedMessage.make("42"))
    expect(processed._tag).toBe("@effect/cluster/MessageState/Processed")
    expect(MessageState.Acknowledged._tag).toBe("@effect/cluster/MessageState/Acknowledged")
    const schema = MessageState.schema(SerializedMessage.schema)
    const encoded = Schema.encodeSync(schema)(processed)
    expect(encoded._tag).toBe("@effect/cluster/MessageState/Processed")
    const decoded = Schema.decodeUnknownSync(schema)({ _tag: "@effect/cluster/MessageState/Acknowledged" })
    expect(MessageState.isMessageState(decoded) && decoded._tag).toBe("@effect/cluster/MessageState/Acknowledged")
  })

  it.effect("PoisonPill carries the 2024 type name", () =>
    Effect.gen(function*() {
      const pill = yield* PoisonPill.make
      expect(PoisonPill.isPoisonPill(pill)).toBe(true)
      expect(pill._tag).toBe("@effect/cluster/PoisonPill")
    }))
})
