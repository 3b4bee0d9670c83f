/**
 * The unit sent from pod to pod: a recipient, a message id, an encoded body and the epoch it was routed
 * with.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"
import { RecipientAddress } from "./RecipientAddress.js"
import { SerializedMessage } from "./SerializedMessage.js"

/**
 * The type id of a `SerializedEnvelope`: the symbol-keyed property every instance carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/SerializedEnvelope": "@effect/cluster/SerializedEnvelope"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/SerializedEnvelope")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * An envelope: what one pod sends another. `messageId` is the message's primary key (empty when the
 * message has none: such messages are not deduplicated). `epoch` is the shard epoch the sender routed
 * with (0 when unknown): a receiver that holds the shard at an older epoch rejects the envelope, since
 * it has not yet learned of the assignment the sender saw.
 *
 * @since 0.1.0
 * @category models
 */
export class SerializedEnvelope extends Schema.Class<SerializedEnvelope>("@effect-cluster/cluster/SerializedEnvelope")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/SerializedEnvelope"),
  recipientAddress: RecipientAddress,
  messageId: Schema.String,
  body: SerializedMessage,
  epoch: Schema.optionalWith(Schema.Int, { default: () => 0 })
}) {
  /**
   * `messageId@typeName#entityId`, as in 2024.
   *
   * @since 0.1.0
   */
  [PrimaryKey.symbol](): string {
    return `${this.messageId}@${this.recipientAddress.recipientTypeName}#${this.recipientAddress.entityId}`
  }

  /**
   * `SerializedEnvelope(messageId@typeName#entityId, epoch n)`.
   *
   * @since 0.1.0
   */
  override toString(): string {
    return `SerializedEnvelope(${this[PrimaryKey.symbol]()}, epoch ${this.epoch})`
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  recipientAddress: RecipientAddress,
  messageId: string,
  body: SerializedMessage,
  epoch = 0
): SerializedEnvelope => new SerializedEnvelope({ recipientAddress, messageId, body, epoch })

/**
 * @since 0.1.0
 * @category guards
 */
export const isSerializedEnvelope = (u: unknown): u is SerializedEnvelope =>
  Predicate.isObject(u) && u instanceof SerializedEnvelope

/**
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<SerializedEnvelope, Schema.Schema.Encoded<typeof SerializedEnvelope>> =
  SerializedEnvelope
