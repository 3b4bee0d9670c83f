/**
 * The entity of the multi-process example: a counter that answers with its new value and the pod that
 * holds it (so the client can show where each counter lives).
 */
import { Message, MessageState, RecipientBehaviour, RecipientType } from "@effect-cluster/cluster"
import { Effect, Exit, Ref, Schema } from "effect"

export class Increment extends Message.TaggedMessage<Increment>()(
  "Increment",
  Schema.Never,
  Schema.Struct({ count: Schema.Number, pod: Schema.String }),
  { requestId: Schema.String },
  (message) => message.requestId
) {}

export const Counter = RecipientType.makeEntityType("Counter", Increment)

/** The behaviour on the pod named `pod`: in-memory state, gone when the counter moves. */
export const counterBehaviour = (pod: string) =>
  RecipientBehaviour.fromFunctionEffectStateful(
    () => Effect.succeed(0),
    (_entityId, _message: Increment, state) =>
      Effect.map(
        Ref.updateAndGet(state, (n) => n + 1),
        (count) => MessageState.Processed(Exit.succeed({ count, pod }))
      )
  )
