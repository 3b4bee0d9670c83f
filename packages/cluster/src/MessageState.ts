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

/**
 * The message was accepted; its result is not known yet.
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageStateAcknowledged {
  readonly _tag: "@effect/cluster/MessageState/Acknowledged"
}

/**
 * The message was processed; `result` is its outcome (for entity messages, an `Exit`).
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageStateProcessed<A> {
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
  _tag: "@effect/cluster/MessageState/Acknowledged" as const
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const Processed = <A>(result: A): MessageStateProcessed<A> =>
  Data.struct({ _tag: "@effect/cluster/MessageState/Processed" as const, result })

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

/**
 * The schema of a message state whose result has the given schema.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema = <A, I, R>(result: Schema.Schema<A, I, R>): Schema.Schema<
  MessageState<A>,
  | { readonly _tag: "@effect/cluster/MessageState/Acknowledged" }
  | { readonly _tag: "@effect/cluster/MessageState/Processed"; readonly result: I },
  R
> =>
  Schema.Union(
    Schema.Struct({ _tag: Schema.Literal("@effect/cluster/MessageState/Acknowledged") }),
    Schema.Struct({ _tag: Schema.Literal("@effect/cluster/MessageState/Processed"), result })
  )
