/**
 * The address of one recipient (entity or topic instance): its type name and id.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"

/**
 * The type id of a `RecipientAddress`: the symbol-keyed property every instance carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/RecipientAddress": "@effect/cluster/RecipientAddress"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/RecipientAddress")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * The address of an entity (or topic) instance. Equal and Hash are structural over the two strings.
 *
 * @since 0.1.0
 * @category models
 */
export class RecipientAddress extends Schema.Class<RecipientAddress>("@effect-cluster/cluster/RecipientAddress")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/RecipientAddress"),
  recipientTypeName: Schema.String,
  entityId: Schema.String
}) {
  /**
   * @since 0.1.0
   */
  override toString(): string {
    return `RecipientAddress(${this.recipientTypeName}#${this.entityId})`
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeRecipientAddress = (recipientTypeName: string, entityId: string): RecipientAddress =>
  new RecipientAddress({ recipientTypeName, entityId })

/**
 * @since 0.1.0
 * @category guards
 */
export const isRecipientAddress = (u: unknown): u is RecipientAddress =>
  Predicate.isObject(u) && u instanceof RecipientAddress

/**
 * The schema of a recipient address.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<RecipientAddress, Schema.Schema.Encoded<typeof RecipientAddress>> =
  RecipientAddress
