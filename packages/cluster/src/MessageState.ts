/**
 * What a behaviour answers when offered a message: acknowledged (queued, result to come) or processed
 * (with its result).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"

/**
 * The type id of a message state: the symbol-keyed property every state carries (its value is the
 * symbol). Encoded as the 2024 string key `"@effect/cluster/MessageState": "@effect/cluster/MessageState"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/MessageState")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * The message was accepted; its result is not known yet.
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageStateAcknowledged {
  readonly [TypeId]: TypeId
  readonly _tag: "@effect/cluster/MessageState/Acknowledged"
}

/**
 * The message was processed; `result` is its outcome (for entity messages, an `Exit`).
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageStateProcessed<A> {
  readonly [TypeId]: TypeId
  readonly _tag: "@effect/cluster/MessageState/Processed"
  readonly result: A
}

/**
 * @since 0.1.0
 * @category models
 */
export type MessageState<A> = MessageStateAcknowledged | MessageStateProcessed<A>

/**
 * @since 0.1.0
 * @category constructors
 */
export const Acknowledged: MessageStateAcknowledged = Data.struct({
  [TypeId]: TypeId,
  _tag: "@effect/cluster/MessageState/Acknowledged" as const
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const Processed = <A>(result: A): MessageStateProcessed<A> =>
  Data.struct({ [TypeId]: TypeId, _tag: "@effect/cluster/MessageState/Processed" as const, result })

/**
 * @since 0.1.0
 * @category guards
 */
export const isMessageState = (u: unknown): u is MessageState<unknown> =>
  Predicate.hasProperty(u, "_tag") &&
  (u._tag === "@effect/cluster/MessageState/Acknowledged" ||
    u._tag === "@effect/cluster/MessageState/Processed")

/**
 * @since 0.1.0
 * @category guards
 */
export const isProcessed = <A>(state: MessageState<A>): state is MessageStateProcessed<A> =>
  state._tag === "@effect/cluster/MessageState/Processed"

/**
 * @since 0.1.0
 * @category pattern matching
 */
export const match = <A, B, C = B>(cases: {
  readonly onAcknowledged: (value: MessageStateAcknowledged) => B
  readonly onProcessed: (value: MessageStateProcessed<A>) => C
}) =>
(value: MessageState<A>): B | C =>
  value._tag === "@effect/cluster/MessageState/Acknowledged"
    ? cases.onAcknowledged(value)
    : cases.onProcessed(value)

/**
 * Maps the result of a processed state with an effect.
 *
 * @since 0.1.0
 * @category combinators
 */
export const mapEffect: {
  <A, B, E, R>(fn: (value: A) => Effect.Effect<B, E, R>): (value: MessageState<A>) => Effect.Effect<MessageState<B>, E, R>
  <A, B, E, R>(value: MessageState<A>, fn: (value: A) => Effect.Effect<B, E, R>): Effect.Effect<MessageState<B>, E, R>
} = dual(2, <A, B, E, R>(value: MessageState<A>, fn: (value: A) => Effect.Effect<B, E, R>) =>
  isProcessed(value) ? Effect.map(fn(value.result), Processed) : Effect.succeed(value))

const typeId = typeIdField(TypeId, "@effect/cluster/MessageState")

/**
 * The schema of a message state whose result has the given schema. Encoded as in 2024:
 * `{ "@effect/cluster/MessageState": "@effect/cluster/MessageState", _tag, result? }`; decoding also
 * accepts a state without the type-id key (the form this package wrote before).
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema = <A, I, R>(result: Schema.Schema<A, I, R>): Schema.Schema<
  MessageState<A>,
  | {
    readonly "@effect/cluster/MessageState"?: "@effect/cluster/MessageState"
    readonly _tag: "@effect/cluster/MessageState/Acknowledged"
  }
  | {
    readonly "@effect/cluster/MessageState"?: "@effect/cluster/MessageState"
    readonly _tag: "@effect/cluster/MessageState/Processed"
    readonly result: I
  },
  R
> =>
  Schema.Union(
    Schema.Struct({ [TypeId]: typeId, _tag: Schema.Literal("@effect/cluster/MessageState/Acknowledged") }),
    Schema.Struct({ [TypeId]: typeId, _tag: Schema.Literal("@effect/cluster/MessageState/Processed"), result })
  )
