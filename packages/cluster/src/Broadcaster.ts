/**
 * Sending to a topic on every pod.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as HashMap from "effect/HashMap"
import type * as Message from "./Message.js"
import type { PodAddress } from "./PodAddress.js"
import type { ShardingException } from "./ShardingException.js"

/**
 * A broadcaster for one topic type (`Sharding.broadcaster(topicType)`): the message goes to the topic's
 * instance on every pod the shard manager knows when the broadcast runs (and this one; when the manager
 * cannot be asked, the pods of this pod's routing table, with a logged warning).
 *
 * - `broadcastDiscard(topicId)(message)`: fire to every pod; fails only if no pod can be determined.
 * - `broadcast(topicId)(message)`: every pod's reply, or its error.
 *
 * @since 0.1.0
 * @category models
 */
export interface Broadcaster<Msg> {
  readonly broadcastDiscard: (topicId: string) => (message: Msg) => Effect.Effect<void, ShardingException>
  readonly broadcast: (
    topicId: string
  ) => <A extends Msg & Message.Message.Any>(
    message: A
  ) => Effect.Effect<
    HashMap.HashMap<PodAddress, Either.Either<Message.Message.Success<A>, ShardingException | Message.Message.Error<A>>>,
    ShardingException
  >
}
