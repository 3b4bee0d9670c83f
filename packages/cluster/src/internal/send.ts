import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as MessageState from "../MessageState.js"
import type { Messenger } from "../Messenger.js"
import type { PodAddress } from "../PodAddress.js"
import { RecipientAddress } from "../RecipientAddress.js"
import type { EntityType, RecipientType } from "../RecipientType.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import type { ShardingException } from "../ShardingException.js"
import {
  EntityNotManagedByThisPodException,
  MessageNotDeliveredException,
  MessageOutcomeUnknownException
} from "../ShardingException.js"
import type * as direct from "./direct.js"
import * as sync from "./exit.js"
import { shardIdOf } from "./hash.js"
import * as models from "./models.js"
import type { PodState, Route } from "./podState.js"
import { primaryKeyOf } from "./primaryKey.js"
import type { Receive } from "./receive.js"
import type { Routing } from "./routing.js"
import { invalidMessage } from "./validate.js"

type Reply = MessageState.MessageState<Exit.Exit<unknown, unknown>>

/** Routing failures: the owner moved or could not be reached; the send retries them. */
export const isRetryable = (error: ShardingException): boolean =>
  error._tag === "@effect/cluster/EntityNotManagedByThisPodException" ||
  error._tag === "PodUnavailableException"

type Body = { value: SerializedMessage | undefined }

/** What a send ends with: the message's result, or a `ShardingException` (or its own failure). */
type Outcome = Effect.Effect<unknown, unknown>

/** How a delivery goes on after one attempt: with its failure, or with the entity's reply. */
interface Continuation extends sync.Continuation<Reply, ShardingException, unknown, unknown> {
  /** Whether the caller wants the message's result (`send`): a `sendDiscard`'s reply is not decoded. */
  readonly awaitResult: boolean
}

// The reply of a `sendDiscard` handled on another pod: its result is not wanted, so not decoded (a result
// the sender's schemas cannot read is no failure of a discard, as it is none when the entity is local).
const processedDiscarded: Reply = MessageState.Processed(Exit.void)

/**
 * One attempt of a delivery to the shard's current owner (this pod or another), continued with `then`. A
 * network transport runs `then` as the reply arrives: the sender resumes once, with the send's outcome.
 */
type DeliverOnce = (
  recipientType: RecipientType<unknown>,
  entityId: string,
  shard: number,
  message: unknown,
  messageId: string | undefined,
  body: Body,
  then: Continuation
) => Outcome

// The continuation of a send to another pod: a pod it could not reach is reported to the routing table;
// a reply is decoded with the message's schemas. (A class: no closures per send.)
class RemoteReply implements direct.SendContinuation<unknown, unknown> {
  constructor(
    readonly pod: PodAddress,
    readonly message: unknown,
    readonly routing: Routing,
    readonly receive: Receive,
    readonly then: Continuation
  ) {}

  onFailure(error: ShardingException): Outcome {
    if (error._tag === "PodUnavailableException") this.routing.reportUnhealthy(this.pod)
    return this.then.onFailure(error)
  }

  onSuccess(reply: MessageState.MessageState<SerializedMessage>): Outcome {
    if (!this.then.awaitResult) {
      return this.then.onSuccess(MessageState.isProcessed(reply) ? processedDiscarded : MessageState.Acknowledged)
    }
    return sync.continueWith(this.receive.decodeReply(this.message, reply), this.then)
  }
}

// One attempt: local delivery without serialization, or the encoded envelope to the owner pod.
const makeDeliverOnce = (state: PodState, routing: Routing, receive: Receive): DeliverOnce => {
  const { sendNow, serialization } = state.services
  const selfKey = state.selfKey
  const sendEncoded = (
    route: Route & { readonly pod: PodAddress },
    recipientType: RecipientType<unknown>,
    entityId: string,
    message: unknown,
    messageId: string | undefined,
    body: SerializedMessage,
    then: Continuation
  ) =>
    sendNow(
      route.pod,
      // Built from values already typed: no validation pass.
      models.serializedEnvelope(models.recipientAddress(recipientType.name, entityId), messageId ?? "", body, route.epoch),
      new RemoteReply(route.pod, message, routing, receive, then)
    )
  return (recipientType, entityId, shard, message, messageId, body, then) => {
    const route = state.routing[shard]
    if (route === undefined || route.pod === undefined) {
      return then.onFailure(
        new EntityNotManagedByThisPodException({
          recipientAddress: new RecipientAddress({ recipientTypeName: recipientType.name, entityId })
        })
      )
    }
    if (route.podKey === selfKey) {
      // Local path: no serialization.
      return sync.continueWith(
        receive.deliverLocal(recipientType.name, entityId, shard, route.epoch, message, messageId),
        then
      )
    }
    const remote = route as Route & { readonly pod: PodAddress }
    // The body is encoded once per send, whatever the number of attempts.
    if (body.value !== undefined) return sendEncoded(remote, recipientType, entityId, message, messageId, body.value, then)
    const encoded = serialization.encode(recipientType.schema, message)
    const exit = sync.completed(encoded)
    if (exit !== undefined && exit._tag === "Success") {
      body.value = exit.value
      return sendEncoded(remote, recipientType, entityId, message, messageId, exit.value, then)
    }
    // (a failure, or a serialization that suspends)
    return Effect.matchEffect(encoded, {
      onFailure: (error) => then.onFailure(error),
      onSuccess: (value) => {
        body.value = value
        return sendEncoded(remote, recipientType, entityId, message, messageId, value, then)
      }
    })
  }
}

// What a delivery with retries needs from its pod.
interface RetryContext {
  readonly state: PodState
  readonly routing: Routing
  readonly deliverOnce: DeliverOnce
  readonly retryTimeoutMillis: number
}

// One send with its retries. Started while the send runs (never when its effect is built): the first
// attempt is made at once, and completes without fiber operations when everything on the way answers
// synchronously. The delivery is its own attempts' continuation, and ends with `finish` of the reply (the
// caller's result). (A class, not per-send closures: less allocation on the hot path.)
class Delivery implements Continuation {
  readonly shard: number
  readonly messageId: string | undefined
  readonly body: Body = { value: undefined }
  private retry: Outcome | undefined = undefined
  attempts = 0
  firstFailureAt: number | undefined = undefined
  outcomeUnknown = false

  constructor(
    readonly context: RetryContext,
    readonly recipientType: RecipientType<unknown>,
    readonly entityId: string,
    readonly message: unknown,
    readonly awaitResult: boolean,
    readonly finish: (reply: Reply) => Outcome
  ) {
    this.shard = shardIdOf(entityId, context.state.numberOfShards)
    this.messageId = primaryKeyOf(message)
  }

  // The next attempt, as an effect (built only when a retry is needed).
  get loop(): Outcome {
    return this.retry ??= Effect.suspend(() => this.attempt())
  }

  attempt(): Outcome {
    this.attempts++
    return this.context.deliverOnce(
      this.recipientType,
      this.entityId,
      this.shard,
      this.message,
      this.messageId,
      this.body,
      this
    )
  }

  onFailure(error: ShardingException): Outcome {
    if (!isRetryable(error)) return Exit.fail(error)
    const { config, fork, monotonicMillis } = this.context.state.services
    const now = monotonicMillis()
    this.firstFailureAt ??= now
    if (error._tag === "PodUnavailableException" && !error.notDelivered) this.outcomeUnknown = true
    if (now - this.firstFailureAt >= this.context.retryTimeoutMillis) {
      const recipientAddress = new RecipientAddress({ recipientTypeName: this.recipientType.name, entityId: this.entityId })
      const attempts = this.attempts
      const reason = `${error._tag.replace("@effect-cluster/cluster/", "")} after ${attempts} attempts`
      return Exit.fail(
        this.outcomeUnknown
          ? new MessageOutcomeUnknownException({ recipientAddress, attempts, reason })
          : new MessageNotDeliveredException({ recipientAddress, attempts, reason })
      )
    }
    // First failure: the routing table is probably stale; refresh it and retry at once. Later
    // failures wait sendRetryInterval between attempts (the shard may be moving).
    if (this.attempts === 1) return Effect.zipRight(this.context.routing.refreshAssignments, this.loop)
    fork(this.context.routing.refreshAssignments)
    return Effect.zipRight(Effect.sleep(config.sendRetryInterval), this.loop)
  }

  onSuccess(reply: Reply): Outcome {
    if (this.awaitResult && !MessageState.isProcessed(reply)) {
      // Acknowledged: the entity queued it. Ask again (deduplicated by primary key) until the
      // result is there; the caller bounds the wait (e.g. Effect.timeout). From now on the message may
      // have been handled: a send that gives up says the outcome is unknown, never "not delivered".
      this.outcomeUnknown = true
      this.firstFailureAt = undefined
      return Effect.zipRight(Effect.sleep(this.context.state.services.config.sendRetryInterval), this.loop)
    }
    return this.finish(reply)
  }
}

// How a send ends: with the message's result (`send`), or with nothing (`sendDiscard`).
const toResult = (reply: Reply): Outcome => (reply as MessageState.MessageStateProcessed<Exit.Exit<any, any>>).result
const toVoid = (): Effect.Effect<unknown> => Exit.void

/** The sender's side: route a message to its shard's owner, retrying routing failures within a bound. */
export const makeMessenger = (
  state: PodState,
  routing: Routing,
  receive: Receive
): <Msg>(entityType: EntityType<Msg>) => Messenger<Msg> => {
  const context: RetryContext = {
    state,
    routing,
    deliverOnce: makeDeliverOnce(state, routing, receive),
    retryTimeoutMillis: Duration.toMillis(state.services.config.sendRetryTimeout)
  }
  const selfKey = state.selfKey

  const deliverWithRetries = (
    recipientType: RecipientType<unknown>,
    entityId: string,
    message: unknown,
    awaitResult: boolean,
    finish: (reply: Reply) => Outcome,
    acknowledged = false
  ): Outcome => {
    const delivery = new Delivery(context, recipientType, entityId, message, awaitResult, finish)
    if (!acknowledged) return delivery.attempt()
    delivery.attempts++
    return delivery.onSuccess(MessageState.Acknowledged)
  }

  // The common case: the entity is on this pod, which serves its shard. One delivery, no retry machinery;
  // anything else (remote, routing failure, acknowledged) goes through deliverWithRetries. Called inside the
  // send's own effect (never when the effect is built), so a send effect run twice sends twice. Ends with
  // `finish` of the reply.
  const sendFast = (
    recipientType: RecipientType<unknown>,
    entityId: string,
    message: unknown,
    awaitResult: boolean,
    finish: (reply: Reply) => Outcome
  ): Outcome => {
    const shard = shardIdOf(entityId, state.numberOfShards)
    const route = state.routing[shard]
    const manager = state.entityManagers.get(recipientType.name)
    if (
      route === undefined || route.podKey !== selfKey || manager === undefined || !state.canServe(shard, route.epoch)
    ) {
      return deliverWithRetries(recipientType, entityId, message, awaitResult, finish)
    }
    return sync.matchEffect(
      manager.deliver(entityId, shard, message, primaryKeyOf(message)),
      (error) =>
        isRetryable(error)
          ? deliverWithRetries(recipientType, entityId, message, awaitResult, finish)
          : Exit.fail(error),
      (reply) =>
        awaitResult && !MessageState.isProcessed(reply)
          ? deliverWithRetries(recipientType, entityId, message, awaitResult, finish, true)
          : finish(reply)
    )
  }

  // Validated here, wherever the entity lives: the same message gets the same answer locally and remotely.
  return <Msg>(entityType: EntityType<Msg>): Messenger<Msg> => ({
    sendDiscard: (entityId) => (message) =>
      Effect.suspend(() => {
        const invalid = invalidMessage(entityType.schema, message)
        if (invalid !== undefined) return Exit.fail(invalid)
        return sendFast(entityType as RecipientType<unknown>, entityId, message, false, toVoid) as Effect.Effect<void, ShardingException>
      }),
    send: (entityId) => (message) =>
      Effect.suspend(() => {
        const invalid = invalidMessage(entityType.schema, message)
        if (invalid !== undefined) return Exit.fail(invalid)
        // Ends as the message's own Exit: a synchronous answer needs no flatMap, a remote one resumes the
        // sender with it.
        return sendFast(entityType as RecipientType<unknown>, entityId, message, true, toResult)
      }) as any
  })
}
