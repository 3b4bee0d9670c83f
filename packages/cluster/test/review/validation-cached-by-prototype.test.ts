// Issue 10 review (#13, location transparency of validation): `invalidMessage` skips validation for any class
// instance whose prototype it once accepted for a schema. The class's constructor validates the class's own
// fields, not what the entity type's schema adds around it (a filter): after one valid send, an instance that
// breaks the entity's filter reaches a local handler unvalidated, while the same message to a remote entity
// fails with `SerializationException` (encoding checks the filter).
import { Message, MessageState, RecipientBehaviour, RecipientType, Sharding } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { eventually, makeTestCluster } from "../utils/cluster.js"

class Inc extends Message.TaggedMessage<Inc>()("Inc", Schema.Never, Schema.String, { n: Schema.Number }, (_) => `${_.n}`) {}
// the entity type accepts small increments only
const Incs = RecipientType.makeEntityType("Incs", Inc.pipe(Schema.filter((inc) => inc.n < 100)))

describe("an instance of a message class the entity type accepted once, breaking the entity type's filter", () => {
  it.scoped("gets the same SerializationException locally as remotely, and never reaches the handler", () =>
    Effect.gen(function*() {
      const handled: Array<unknown> = []
      const behaviour = Sharding.registerEntity(Incs)(
        RecipientBehaviour.fromFunctionEffect<Inc, never>((_, message) =>
          Effect.sync(() => {
            handled.push(message.n)
            return MessageState.Processed(Exit.succeed("done"))
          })
        )
      )
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, behaviour)
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      // an older version: it holds no shard, so every entity is remote to it
      const client = yield* cluster.startPod(9, behaviour, { serverVersion: "0.0.1" })
      // a valid instance first, locally and remotely
      expect(yield* a.sharding.messenger(Incs).send("e")(new Inc({ n: 1 }))).toBe("done")
      expect(yield* client.sharding.messenger(Incs).send("e")(new Inc({ n: 2 }))).toBe("done")
      // then one the entity type does not accept
      const untrusted = new Inc({ n: 1000 })
      const outcome = (exit: Exit.Exit<string, { readonly _tag: string }>) =>
        Exit.isSuccess(exit) ? `handled: ${exit.value}` : Exit.isFailure(exit) && exit.cause._tag === "Fail"
          ? exit.cause.error._tag
          : "defect"
      const local = outcome(yield* Effect.exit(a.sharding.messenger(Incs).send("e")(untrusted)))
      const remote = outcome(yield* Effect.exit(client.sharding.messenger(Incs).send("e")(untrusted)))
      expect({ local, remote, handled }).toEqual({
        local: "SerializationException",
        remote: "SerializationException",
        handled: [1, 2]
      })
    }))
})
