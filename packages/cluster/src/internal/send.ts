import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as MessageState from "../MessageState.js"
import type { Messenger } from "../Messenger.js"
import { RecipientAddress } from "../RecipientAddress.js"
import type { EntityType, RecipientType } from "../RecipientType.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import type { SerializationException, ShardingException } from "../ShardingException.js"
import {
  EntityNotManagedByThisPodException,
  MessageNotDeliveredException,
  MessageOutcomeUnknownException
} from "../ShardingException.js"
import * as sync from "./exit.js"
import { shardIdOf } from "./hash.js"
import * as models from "./models.js"
import type { PodState } from "./podState.js"
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

/** One attempt of a delivery to the shard's current owner (this pod or another). */
type DeliverOnce = (
  recipientType: RecipientType<unknown>,
  entityId: string,
  shard: number,
  message: unknown,
  messageId: string | undefined,
  body: Body
) => Effect.Effect<Reply, ShardingException>

// One attempt: local delivery without serialization, or the encoded envelope to the owner pod.
const makeDeliverOnce = (state: PodState, routing: Routing, receive: Receive): DeliverOnce => {
  const { sendNow, serialization } = state.services
  const selfKey = state.selfKey
  return (recipientType, entityId, shard, message, messageId, body) => {
    const route = state.routing[shard]
    if (route === undefined || route.pod === undefined) {
      return Exit.fail(
        new EntityNotManagedByThisPodException({
          recipientAddress: new RecipientAddress({ recipientTypeName: recipientType.name, entityId })
        })
      )
    }
    if (route.podKey === selfKey) {
      // Local path: no serialization.
      return receive.deliverLocal(recipientType.name, entityId, shard, route.epoch, message, messageId)
    }
    const pod = route.pod
    // The body is encoded once per send, whatever the number of attempts.
    const encoded: Effect.Effect<SerializedMessage, SerializationException> = body.value !== undefined
      ? Exit.succeed(body.value)
      : sync.mapBoth(serialization.encode(recipientType.schema, message), identity, (value) => (body.value = value))
    return sync.flatMap(encoded, (value) =>
      sync.matchEffect(
        sendNow(
          pod,
          // Built from values already typed: no validation pass.
          models.serializedEnvelope(
            models.recipientAddress(recipientType.name, entityId),
            messageId ?? "",
            value,
            route.epoch
          )
        ),
        (error) => {
          if (error._tag === "PodUnavailableException") routing.reportUnhealthy(pod)
          return Exit.fail(error)
        },
        (reply) => receive.decodeReply(message, reply)
      ))
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
// synchronously. (A class, not per-send closures: less allocation on the hot path.)
class Delivery {
  readonly shard: number
  readonly messageId: string | undefined
  readonly body: Body = { value: undefined }
  private retry: Effect.Effect<Reply, ShardingException> | undefined = undefined
  attempts = 0
  firstFailureAt: number | undefined = undefined
  outcomeUnknown = false

  constructor(
    readonly context: RetryContext,
    readonly recipientType: RecipientType<unknown>,
    readonly entityId: string,
    readonly message: unknown,
    readonly awaitResult: boolean
  ) {
    this.shard = shardIdOf(entityId, context.state.numberOfShards)
    this.messageId = primaryKeyOf(message)
  }

  // The next attempt, as an effect (built only when a retry is needed).
  get loop(): Effect.Effect<Reply, ShardingException> {
    return this.retry ??= Effect.suspend(() => this.attempt())
  }

  attempt(): Effect.Effect<Reply, ShardingException> {
    this.attempts++
    return sync.matchEffect(
      this.context.deliverOnce(this.recipientType, this.entityId, this.shard, this.message, this.messageId, this.body),
      (error) => this.onFailure(error),
      (reply) => this.onSuccess(reply)
    )
  }

  onFailure(error: ShardingException): Effect.Effect<Reply, ShardingException> {
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

  onSuccess(reply: Reply): Effect.Effect<Reply, ShardingException> {
    if (this.awaitResult && !MessageState.isProcessed(reply)) {
      // Acknowledged: the entity queued it. Ask again (deduplicated by primary key) until the
      // result is there; the caller bounds the wait (e.g. Effect.timeout). From now on the message may
      // have been handled: a send that gives up says the outcome is unknown, never "not delivered".
      this.outcomeUnknown = true
      this.firstFailureAt = undefined
      return Effect.zipRight(Effect.sleep(this.context.state.services.config.sendRetryInterval), this.loop)
    }
    return Exit.succeed(reply)
  }
}

const toResult = (reply: Reply) => (reply as MessageState.MessageStateProcessed<Exit.Exit<any, any>>).result

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
    acknowledged = false
  ): Effect.Effect<Reply, ShardingException> => {
    const delivery = new Delivery(context, recipientType, entityId, message, awaitResult)
    if (!acknowledged) return delivery.attempt()
    delivery.attempts++
    return delivery.onSuccess(MessageState.Acknowledged)
  }

  // The common case: the entity is on this pod, which serves its shard. One delivery, no retry machinery;
  // anything else (remote, routing failure, acknowledged) goes through deliverWithRetries. Called inside the
  // send's own effect (never when the effect is built), so a send effect run twice sends twice.
  const sendFast = (
    recipientType: RecipientType<unknown>,
    entityId: string,
    message: unknown,
    awaitResult: boolean
  ): Effect.Effect<Reply, ShardingException> => {
    const shard = shardIdOf(entityId, state.numberOfShards)
    const route = state.routing[shard]
    const manager = state.entityManagers.get(recipientType.name)
    if (
      route === undefined || route.podKey !== selfKey || manager === undefined || !state.canServe(shard, route.epoch)
    ) {
      return deliverWithRetries(recipientType, entityId, message, awaitResult)
    }
    return sync.matchEffect(
      manager.deliver(entityId, shard, message, primaryKeyOf(message)),
      (error) =>
        isRetryable(error) ? deliverWithRetries(recipientType, entityId, message, awaitResult) : Exit.fail(error),
      (reply) =>
        awaitResult && !MessageState.isProcessed(reply)
          ? deliverWithRetries(recipientType, entityId, message, awaitResult, true)
          : Exit.succeed(reply)
    )
  }

  // Validated here, wherever the entity lives: the same message gets the same answer locally and remotely.
  return <Msg>(entityType: EntityType<Msg>): Messenger<Msg> => ({
    sendDiscard: (entityId) => (message) =>
      Effect.suspend(() => {
        const invalid = invalidMessage(entityType.schema, message)
        if (invalid !== undefined) return Exit.fail(invalid)
        const sent = sendFast(entityType as RecipientType<unknown>, entityId, message, false)
        return sync.isExit(sent) && Exit.isSuccess(sent) ? Exit.void : Effect.asVoid(sent)
      }),
    send: (entityId) => (message) =>
      Effect.suspend(() => {
        const invalid = invalidMessage(entityType.schema, message)
        if (invalid !== undefined) return Exit.fail(invalid)
        // A synchronous answer is returned as the message's own Exit (no flatMap).
        return sync.flatMap(sendFast(entityType as RecipientType<unknown>, entityId, message, true), toResult)
      }) as any
  })
}
