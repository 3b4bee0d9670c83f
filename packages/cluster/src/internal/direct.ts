import type * as Effect from "effect/Effect"
import type { MessageState } from "../MessageState.js"
import type { PodAddress } from "../PodAddress.js"
import type { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import type { ShardingException } from "../ShardingException.js"
import * as sync from "./exit.js"

/**
 * Direct calls between the pieces of this package that live in one process (a pod and the in-process
 * transport). The public calls (`Pods.sendAndGetState`, `Sharding.sendMessageToLocalEntityManagerWithoutRetries`)
 * are suspended effects: they do their work when run. These registered variants do it when called, so a
 * caller that is already running can chain them with plain function calls, and a cross-pod send whose
 * every step answers synchronously (JSON, a handler returning an Exit) completes without fiber
 * operations. They must only be called from inside a running effect.
 */
type Send = (pod: PodAddress, envelope: SerializedEnvelope) => Effect.Effect<MessageState<SerializedMessage>, ShardingException>

/**
 * A send that continues with `then`: on the sender's own reply, `then` runs with its outcome, and the send
 * completes as the effect `then` returns. A network transport calls `then` as the reply arrives, so the
 * sender's fiber resumes once, with the final outcome, instead of stepping through each continuation.
 */
export type SendThen = <B, E>(
  pod: PodAddress,
  envelope: SerializedEnvelope,
  then: SendContinuation<B, E>
) => Effect.Effect<B, E>

/** What a `SendThen` continues with: the failure or the reply of the envelope (called as its methods). */
export interface SendContinuation<B, E> extends sync.Continuation<MessageState<SerializedMessage>, ShardingException, B, E> {}

type Receive = (envelope: SerializedEnvelope) => Effect.Effect<MessageState<SerializedMessage>, ShardingException>

const senders = new WeakMap<object, SendThen>()
const receivers = new WeakMap<object, Receive>()

/** Registers the immediate variant of a `Pods` implementation's `sendAndGetState`, continued by its caller. */
export const registerSender = (pods: object, send: SendThen): void => void senders.set(pods, send)

/** The immediate `sendAndGetState` of `pods`, if it registered one. */
export const senderOf = (pods: object): SendThen | undefined => senders.get(pods)

/** A `SendThen` of a send that is not continued by its transport: `then` is chained after it. */
export const sendThen = (send: Send): SendThen => (pod, envelope, then) =>
  sync.continueWith(send(pod, envelope), then)

/** Registers the immediate variant of a pod's `sendMessageToLocalEntityManagerWithoutRetries`. */
export const registerReceiver = (sharding: object, receive: Receive): void => void receivers.set(sharding, receive)

/** The immediate receive function of a pod, if it registered one. */
export const receiverOf = (sharding: object): Receive | undefined => receivers.get(sharding)
