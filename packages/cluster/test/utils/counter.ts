import { Message, MessageState, RecipientBehaviour, RecipientType } from "@effect-cluster/cluster"
import { Effect, Exit, Ref, Schema } from "effect"

export class Increment extends Message.TaggedMessage<Increment>()(
  "Increment",
  Schema.Never,
  Schema.Number,
  { messageId: Schema.String, by: Schema.Number },
  (_) => _.messageId
) {}

export class GetCount extends Message.TaggedMessage<GetCount>()(
  "GetCount",
  Schema.Never,
  Schema.Number,
  { messageId: Schema.String },
  (_) => _.messageId
) {}

export class Fail extends Message.TaggedMessage<Fail>()(
  "Fail",
  Schema.String,
  Schema.Void,
  { messageId: Schema.String, reason: Schema.String },
  (_) => _.messageId
) {}

export class Crash extends Message.TaggedMessage<Crash>()(
  "Crash",
  Schema.Never,
  Schema.Void,
  { messageId: Schema.String },
  (_) => _.messageId
) {}

export const CounterMessage = Schema.Union(Increment, GetCount, Fail, Crash)
export type CounterMessage = typeof CounterMessage.Type

export const Counter = RecipientType.makeEntityType("Counter", CounterMessage)

let nextId = 0
export const freshId = (prefix = "m") => `${prefix}-${nextId++}`

/** A counter entity; `onStart`/`onStop` observe its lifecycle. */
export const counterBehaviour = (hooks?: {
  readonly onStart?: (entityId: string) => Effect.Effect<void>
  readonly onStop?: (entityId: string) => Effect.Effect<void>
  readonly onMessage?: (entityId: string, message: CounterMessage) => Effect.Effect<void>
}) =>
  RecipientBehaviour.fromFunctionEffectStateful(
    (entityId) =>
      Effect.gen(function*() {
        if (hooks?.onStart) yield* hooks.onStart(entityId)
        if (hooks?.onStop) yield* Effect.addFinalizer(() => hooks.onStop!(entityId))
        return 0
      }) as Effect.Effect<number>,
    (entityId, message: CounterMessage, state) =>
      Effect.gen(function*() {
        if (hooks?.onMessage) yield* hooks.onMessage(entityId, message)
        switch (message._tag) {
          case "Increment":
            return MessageState.Processed(Exit.succeed(yield* Ref.updateAndGet(state, (n) => n + message.by)))
          case "GetCount":
            return MessageState.Processed(Exit.succeed(yield* Ref.get(state)))
          case "Fail":
            return MessageState.Processed(Exit.fail(message.reason))
          case "Crash":
            return yield* Effect.die(new Error("boom"))
        }
      }) as Effect.Effect<MessageState.MessageState<any>>
  )
