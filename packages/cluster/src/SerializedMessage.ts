/**
 * An encoded message body.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * A message body encoded by `Serialization` (with `Serialization.json`: the JSON text of the
 * schema-encoded message).
 *
 * @since 0.1.0
 * @category models
 */
export class SerializedMessage extends Schema.Class<SerializedMessage>("@effect-cluster/cluster/SerializedMessage")({
  value: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (value: string): SerializedMessage => new SerializedMessage({ value })

/**
 * @since 0.1.0
 * @category guards
 */
export const isSerializedMessage = (u: unknown): u is SerializedMessage =>
  Predicate.isObject(u) && u instanceof SerializedMessage

/**
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<SerializedMessage, { readonly value: string }> = SerializedMessage
