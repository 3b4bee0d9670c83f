/**
 * Sending to entities of one type.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Message from "./Message.js"
import type { ShardingException } from "./ShardingException.js"

/**
 * A messenger for one entity type (`Sharding.messenger(entityType)`). The entity may be on this pod or
 * another: the call is the same.
 *
 * - `send(entityId)(message)`: waits for the reply; the message's typed failure arrives in the error
 *   channel. Routing failures are retried on `ShardingConfig.sendRetryInterval` for at most
 *   `sendRetryTimeout`; retries are deduplicated at the entity by the message's primary key.
 * - `sendDiscard(entityId)(message)`: returns once the entity accepted the message (and, for
 *   `fromFunctionEffect` behaviours, processed it), without decoding a reply.
 *
 * One sender's messages to one entity, sent one after the other, are processed in that order.
 *
 * @since 0.1.0
 * @category models
 */
export interface Messenger<Msg> {
  readonly sendDiscard: (entityId: string) => (message: Msg) => Effect.Effect<void, ShardingException>
  readonly send: (
    entityId: string
  ) => <A extends Msg & Message.Message.Any>(
    message: A
  ) => Effect.Effect<Message.Message.Success<A>, ShardingException | Message.Message.Error<A>>
}
