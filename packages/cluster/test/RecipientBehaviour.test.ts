/**
 * RecipientBehaviour through its own subpath, as a 2024 program uses it: `fromFunctionEffect` keeps the
 * 2024 constraint on its message type (a message with a result and a primary key), so the reply's Exit type
 * follows from the message.
 */
import * as Message from "@effect-cluster/cluster/Message"
import * as MessageState from "@effect-cluster/cluster/MessageState"
import * as RecipientBehaviour from "@effect-cluster/cluster/RecipientBehaviour"
import * as RecipientBehaviourContext from "@effect-cluster/cluster/RecipientBehaviourContext"
import * as RecipientType from "@effect-cluster/cluster/RecipientType"
import * as ShardId from "@effect-cluster/cluster/ShardId"
import * as RecipientAddress from "@effect-cluster/cluster/RecipientAddress"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"

class Greet extends Message.TaggedMessage<Greet>()(
  "Greet",
  Schema.Never,
  Schema.String,
  { id: Schema.String, name: Schema.String },
  (_) => _.id
) {}
const Greeter = RecipientType.makeEntityType("Greeter", Greet)

describe("RecipientBehaviour", () => {
  it.scoped("fromFunctionEffect answers with the handler's state, typed by the message", () =>
    Effect.gen(function*() {
      const behaviour = RecipientBehaviour.fromFunctionEffect((entityId, message: Greet) =>
        Effect.succeed(MessageState.Processed(Exit.succeed(`hello ${message.name} from ${entityId}`)))
      )
      const offer = yield* behaviour.pipe(
        Effect.provideService(
          RecipientBehaviourContext.RecipientBehaviourContext,
          RecipientBehaviourContext.make({
            recipientAddress: RecipientAddress.makeRecipientAddress(Greeter.name, "greeter-1"),
            shardId: ShardId.make(1),
            recipientType: Greeter as RecipientType.RecipientType<unknown>,
            forkShutdown: Effect.void
          })
        )
      )
      const state = yield* offer(new Greet({ id: "g1", name: "Ada" }))
      // The reply's type comes from the message: Exit<string, never>.
      const exit: MessageState.MessageState<Exit.Exit<string, never>> = state
      expect(exit).toEqual(MessageState.Processed(Exit.succeed("hello Ada from greeter-1")))
    }))

  it("fromFunctionEffect rejects a message type that is not a message (the 2024 constraint)", () => {
    const handler = (_entityId: string, _message: string) =>
      Effect.succeed(MessageState.Acknowledged as MessageState.MessageState<never>)
    // @ts-expect-error a plain string has no result schema nor primary key
    const behaviour = RecipientBehaviour.fromFunctionEffect(handler)
    expect(Effect.isEffect(behaviour)).toBe(true)
  })
})
