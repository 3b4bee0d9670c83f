/**
 * The transport from the manager to pods and between pods. Implementations: `noop`, the in-process
 * transport (`InProcessTransport`), and a network one (next release).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import type { MessageState } from "./MessageState.js"
import type { PodAddress } from "./PodAddress.js"
import type { SerializedEnvelope } from "./SerializedEnvelope.js"
import type { SerializedMessage } from "./SerializedMessage.js"
import type { ShardId } from "./ShardId.js"
import type { ShardingException } from "./ShardingException.js"
import { PodUnavailableException } from "./ShardingException.js"

/**
 * Calls to a pod.
 *
 * - `assignShards(pod, shards, epochs?)`: the pod now owns `shards`, at the given epochs (shard number ->
 *   epoch). Without epochs the pod renews its lease to learn them.
 * - `unassignShards(pod, shards, epochs?)`: the pod must stop the shards' entities (within
 *   `entityTerminationTimeout`) and answers only then. `epochs` are the epochs being revoked: the pod will
 *   not take these shards back at those epochs even from a grant already in flight.
 * - `ping(pod)`: whether it answers.
 * - `sendAndGetState(pod, envelope)`: delivers an envelope to the pod's entity.
 *
 * @since 0.1.0
 * @category models
 */
export interface Pods {
  readonly assignShards: (
    pod: PodAddress,
    shards: HashSet.HashSet<ShardId>,
    epochs?: ReadonlyMap<number, number>
  ) => Effect.Effect<void, PodUnavailableException>
  readonly unassignShards: (
    pod: PodAddress,
    shards: HashSet.HashSet<ShardId>,
    epochs?: ReadonlyMap<number, number>
  ) => Effect.Effect<void, PodUnavailableException>
  readonly ping: (pod: PodAddress) => Effect.Effect<void, PodUnavailableException>
  readonly sendAndGetState: (
    pod: PodAddress,
    envelope: SerializedEnvelope
  ) => Effect.Effect<MessageState<SerializedMessage>, ShardingException>
}

/**
 * @since 0.1.0
 * @category context
 */
export const Pods: Context.Tag<Pods, Pods> = Context.GenericTag<Pods>("@effect-cluster/cluster/Pods")

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (impl: Pods): Pods => impl

/**
 * A transport to nowhere, for single-pod programs (`ShardManagerClient.local`): assign, unassign and ping
 * succeed; `sendAndGetState` fails with `PodUnavailableException` (in 2024 it never returned).
 *
 * @since 0.1.0
 * @category layers
 */
export const noop: Layer.Layer<Pods> = Layer.succeed(Pods, {
  assignShards: () => Effect.void,
  unassignShards: () => Effect.void,
  ping: () => Effect.void,
  sendAndGetState: (pod) => Effect.fail(new PodUnavailableException({ podAddress: pod }))
})
