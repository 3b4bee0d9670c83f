import type * as Effect from "effect/Effect"
import type { MessageState } from "../MessageState.js"
import type { PodAddress } from "../PodAddress.js"
import type { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import type { ShardingException } from "../ShardingException.js"

/**
 * Direct calls between the pieces of this package that live in one process (a pod and the in-process
 * transport). The public calls (`Pods.sendAndGetState`, `Sharding.sendMessageToLocalEntityManagerWithoutRetries`)
 * are suspended effects: they do their work when run. These registered variants do it when called, so a
 * caller that is already running can chain them with plain function calls, and a cross-pod send whose
 * every step answers synchronously (JSON, a handler returning an Exit) completes without fiber
 * operations. They must only be called from inside a running effect.
 */
type Send = (pod: PodAddress, envelope: SerializedEnvelope) => Effect.Effect<MessageState<SerializedMessage>, ShardingException>
type Receive = (envelope: SerializedEnvelope) => Effect.Effect<MessageState<SerializedMessage>, ShardingException>

const senders = new WeakMap<object, Send>()
const receivers = new WeakMap<object, Receive>()

/** Registers the immediate variant of a `Pods` implementation's `sendAndGetState`. */
export const registerSender = (pods: object, send: Send): void => void senders.set(pods, send)

/** The immediate `sendAndGetState` of `pods`, if it registered one. */
export const senderOf = (pods: object): Send | undefined => senders.get(pods)

/** Registers the immediate variant of a pod's `sendMessageToLocalEntityManagerWithoutRetries`. */
export const registerReceiver = (sharding: object, receive: Receive): void => void receivers.set(sharding, receive)

/** The immediate receive function of a pod, if it registered one. */
export const receiverOf = (sharding: object): Receive | undefined => receivers.get(sharding)
