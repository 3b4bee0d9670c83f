// Issue 10 review (#13, location transparency of validation, for topics): `send` validates a message before
// routing it, a broadcast did not. A malformed message (built from untrusted JSON) reached the topic's
// handler on the sending pod unvalidated while every other pod answered `SerializationException` (encoding
// failed): one broadcast, two different answers depending on where each listener lives.
import { Message, MessageState, RecipientBehaviour, RecipientType, Sharding } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { eventually, makeTestCluster, settle } from "../utils/cluster.js"

class Note extends Message.TaggedMessage<Note>()("Note", Schema.Never, Schema.String, { id: Schema.String }, (_) => _.id) {}
const Notes = RecipientType.makeTopicType("Notes", Note)

describe("a malformed broadcast", () => {
  it.scoped("fails with SerializationException before reaching any pod, the sending one included", () =>
    Effect.gen(function*() {
      const heard: Array<string> = []
      const listener = (pod: number) =>
        Sharding.registerTopic(Notes)(RecipientBehaviour.fromFunctionEffect<Note, never>((_, message) =>
          Effect.sync(() => {
            heard.push(`${String(message.id)}@${pod}`)
            return MessageState.Processed(Exit.succeed(`pod ${pod}`))
          })
        ))
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, listener(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      yield* cluster.startPod(2, listener(2), { serverVersion: "0.0.1" })
      const untrusted = JSON.parse("{\"_tag\":\"Note\",\"id\":5}") as Note
      const replies = yield* Effect.exit(a.sharding.broadcaster(Notes).broadcast("news")(untrusted))
      const discarded = yield* Effect.exit(a.sharding.broadcaster(Notes).broadcastDiscard("news")(untrusted))
      yield* settle
      const tag = (exit: Exit.Exit<unknown, { readonly _tag: string }>) =>
        Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : "no typed failure"
      expect({ broadcast: tag(replies), broadcastDiscard: tag(discarded), heard }).toEqual({
        broadcast: "SerializationException",
        broadcastDiscard: "SerializationException",
        heard: []
      })
      // a constructed message reaches both pods
      yield* a.sharding.broadcaster(Notes).broadcastDiscard("news")(new Note({ id: "ok" }))
      yield* settle
      expect(heard.sort()).toEqual(["ok@1", "ok@2"])
    }))
})
