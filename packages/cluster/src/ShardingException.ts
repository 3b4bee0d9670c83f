/**
 * The errors of the cluster, as `Schema.TaggedError` classes so they cross the wire. Each says whether the
 * message was certainly not delivered, delivered, or its outcome is unknown (`deliveryOutcome`).
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { PodAddress } from "./PodAddress.js"
import { RecipientAddress } from "./RecipientAddress.js"

/**
 * The target pod does not own the entity's shard (at the sender's epoch or later), or holds no valid lease
 * for it, or is shutting down. The message was not delivered; `send` retries it after refreshing its
 * routing table.
 *
 * @since 0.1.0
 * @category errors
 */
export class EntityNotManagedByThisPodException extends Schema.TaggedError<EntityNotManagedByThisPodException>()(
  "@effect/cluster/EntityNotManagedByThisPodException",
  { recipientAddress: RecipientAddress }
) {}

/**
 * No behaviour is registered for the recipient's type on the pod owning it. Not delivered; not retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class EntityTypeNotRegisteredException extends Schema.TaggedError<EntityTypeNotRegisteredException>()(
  "EntityTypeNotRegisteredException",
  { entityType: Schema.String, podAddress: PodAddress }
) {}

/**
 * The entity reported the message processed without a result (a mailbox behaviour called
 * `processed(msg, Option.none())`), so `send` has nothing to return. Delivered.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoResultInProcessedMessageStateException
  extends Schema.TaggedError<NoResultInProcessedMessageStateException>()(
    "NoResultInProcessedMessageStateException",
    {}
  )
{}

/**
 * The shard manager does not know this pod (it was unregistered, or declared dead after its lease ended).
 * The pod must drop its shards and register again.
 *
 * @since 0.1.0
 * @category errors
 */
export class PodNoLongerRegisteredException extends Schema.TaggedError<PodNoLongerRegisteredException>()(
  "PodNoLongerRegisteredException",
  { podAddress: PodAddress }
) {}

/**
 * A pod could not be reached, or stopped answering during the call: the outcome of a message is unknown.
 * `send` retries it (deduplication by primary key makes the retry safe for messages that have one).
 * `notDelivered` is `true` when the transport knows the message never left (no connection to the pod was
 * made during the attempt): then it was certainly not delivered.
 *
 * @since 0.1.0
 * @category errors
 */
export class PodUnavailableException extends Schema.TaggedError<PodUnavailableException>()(
  "PodUnavailableException",
  { podAddress: PodAddress, notDelivered: Schema.optionalWith(Schema.Boolean, { default: () => false }) }
) {}

/**
 * A message or reply could not be encoded or decoded with its schema. `error` says why. For a request body
 * the message was not delivered (or was rejected before the entity saw it); for a reply, the entity ran.
 *
 * @since 0.1.0
 * @category errors
 */
export class SerializationException extends Schema.TaggedError<SerializationException>()(
  "SerializationException",
  {
    error: Schema.String,
    /** `"request"`: the message body (not delivered); `"reply"`: the entity's answer (delivered). */
    stage: Schema.optionalWith(Schema.Literal("request", "reply"), { default: () => "request" as const })
  }
) {}

/**
 * The entity's behaviour failed with a defect while handling the message (or could not be started).
 * Delivered; the outcome of the handler is unknown to the caller beyond `error`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ExceptionWhileOfferingMessageException extends Schema.TaggedError<ExceptionWhileOfferingMessageException>()(
  "ExceptionWhileOfferingMessageException",
  { error: Schema.optionalWith(Schema.String, { default: () => "" }) }
) {}

/**
 * The shard manager could not be reached. Nothing was changed by the call. `reason` says why when it is
 * known (a refused connection, a certificate that is not trusted, a timeout, a standby manager...).
 *
 * @since 0.1.0
 * @category errors
 */
export class ShardManagerUnavailableException extends Schema.TaggedError<ShardManagerUnavailableException>()(
  "ShardManagerUnavailableException",
  { reason: Schema.optional(Schema.String) }
) {}

/**
 * The entity's mailbox already holds `entityMailboxCapacity` messages. Not delivered; not retried (it is
 * back-pressure: the caller decides).
 *
 * @since 0.1.0
 * @category errors
 */
export class MailboxFullException extends Schema.TaggedError<MailboxFullException>()(
  "MailboxFullException",
  { recipientAddress: RecipientAddress, capacity: Schema.Int }
) {}

/**
 * The pod already runs `maxEntitiesPerPod` entities and cannot start another. Not delivered; not retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class EntityCapacityExceededException extends Schema.TaggedError<EntityCapacityExceededException>()(
  "EntityCapacityExceededException",
  { recipientAddress: RecipientAddress, podAddress: PodAddress, capacity: Schema.Int }
) {}

/**
 * `send` gave up after its bounded retry schedule, and every attempt certainly failed before the entity saw
 * the message (no owner, stale owner, shard moving). The message was not delivered.
 *
 * @since 0.1.0
 * @category errors
 */
export class MessageNotDeliveredException extends Schema.TaggedError<MessageNotDeliveredException>()(
  "MessageNotDeliveredException",
  { recipientAddress: RecipientAddress, attempts: Schema.Int, reason: Schema.String }
) {}

/**
 * `send` gave up after its bounded retry schedule, and at least one attempt may have reached the entity
 * (a pod became unavailable during the call). The message may or may not have been processed.
 *
 * @since 0.1.0
 * @category errors
 */
export class MessageOutcomeUnknownException extends Schema.TaggedError<MessageOutcomeUnknownException>()(
  "MessageOutcomeUnknownException",
  { recipientAddress: RecipientAddress, attempts: Schema.Int, reason: Schema.String }
) {}

/**
 * The configuration breaks the lease timing rules (checked when a pod or manager starts): renewal at
 * least every `leaseDuration / 3`, and `entityTerminationTimeout < leaseDuration - leaseRenewalInterval -
 * leaseMargin`. Not a `ShardingException`: it is a start-up defect.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfigurationException extends Schema.TaggedError<InvalidConfigurationException>()(
  "InvalidConfigurationException",
  { reason: Schema.String }
) {}

/**
 * The schema of every sharding exception.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema = Schema.Union(
  EntityNotManagedByThisPodException,
  EntityTypeNotRegisteredException,
  NoResultInProcessedMessageStateException,
  PodNoLongerRegisteredException,
  PodUnavailableException,
  SerializationException,
  ExceptionWhileOfferingMessageException,
  ShardManagerUnavailableException,
  MailboxFullException,
  EntityCapacityExceededException,
  MessageNotDeliveredException,
  MessageOutcomeUnknownException
)

/**
 * Any sharding exception.
 *
 * @since 0.1.0
 * @category models
 */
export type ShardingException = typeof schema.Type

const tags = new Set<string>(schema.members.map((member) => member._tag))

/**
 * @since 0.1.0
 * @category guards
 */
export const isShardingException = (u: unknown): u is ShardingException =>
  Predicate.hasProperty(u, "_tag") && typeof u._tag === "string" && tags.has(u._tag)

/**
 * @since 0.1.0
 * @category guards
 */
export const isEntityNotManagedByThisPodException = (u: unknown): u is EntityNotManagedByThisPodException =>
  u instanceof EntityNotManagedByThisPodException
/**
 * @since 0.1.0
 * @category guards
 */
export const isEntityTypeNotRegisteredException = (u: unknown): u is EntityTypeNotRegisteredException =>
  u instanceof EntityTypeNotRegisteredException
/**
 * @since 0.1.0
 * @category guards
 */
export const isNoResultInProcessedMessageStateException = (
  u: unknown
): u is NoResultInProcessedMessageStateException => u instanceof NoResultInProcessedMessageStateException
/**
 * @since 0.1.0
 * @category guards
 */
export const isPodNoLongerRegisteredException = (u: unknown): u is PodNoLongerRegisteredException =>
  u instanceof PodNoLongerRegisteredException
/**
 * @since 0.1.0
 * @category guards
 */
export const isPodUnavailableException = (u: unknown): u is PodUnavailableException =>
  u instanceof PodUnavailableException
/**
 * @since 0.1.0
 * @category guards
 */
export const isSerializationException = (u: unknown): u is SerializationException =>
  u instanceof SerializationException
/**
 * @since 0.1.0
 * @category guards
 */
export const isExceptionWhileOfferingMessageException = (u: unknown): u is ExceptionWhileOfferingMessageException =>
  u instanceof ExceptionWhileOfferingMessageException

/**
 * Whether a failed call may have reached the entity:
 * - `"NotDelivered"`: certainly not processed; safe to send again.
 * - `"Delivered"`: the entity saw it (and failed, or gave no result).
 * - `"Unknown"`: it may or may not have been processed.
 *
 * @since 0.1.0
 * @category accessors
 */
export const deliveryOutcome = (error: ShardingException): "NotDelivered" | "Delivered" | "Unknown" => {
  switch (error._tag) {
    case "@effect/cluster/EntityNotManagedByThisPodException":
    case "EntityTypeNotRegisteredException":
    case "PodNoLongerRegisteredException":
    case "ShardManagerUnavailableException":
    case "MailboxFullException":
    case "EntityCapacityExceededException":
    case "MessageNotDeliveredException":
      return "NotDelivered"
    case "SerializationException":
      return error.stage === "reply" ? "Delivered" : "NotDelivered"
    case "NoResultInProcessedMessageStateException":
    case "ExceptionWhileOfferingMessageException":
      return "Delivered"
    case "PodUnavailableException":
      return error.notDelivered ? "NotDelivered" : "Unknown"
    case "MessageOutcomeUnknownException":
      return "Unknown"
  }
}
