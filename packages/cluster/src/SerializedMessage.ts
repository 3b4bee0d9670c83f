/**
 * An encoded message body.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"

/**
 * The type id of a `SerializedMessage`: the symbol-keyed property every instance carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/SerializedMessage": "@effect/cluster/SerializedMessage"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/SerializedMessage")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * A message body encoded by `Serialization` (with `Serialization.json`: the JSON text of the
 * schema-encoded message).
 *
 * @since 0.1.0
 * @category models
 */
export class SerializedMessage extends Schema.Class<SerializedMessage>("@effect-cluster/cluster/SerializedMessage")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/SerializedMessage"),
  value: Schema.String
}) {
  /**
   * `SerializedMessage(<value>)`.
   *
   * @since 0.1.0
   */
  override toString(): string {
    return `SerializedMessage(${this.value})`
  }
}

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
export const schema: Schema.Schema<SerializedMessage, Schema.Schema.Encoded<typeof SerializedMessage>> = SerializedMessage
