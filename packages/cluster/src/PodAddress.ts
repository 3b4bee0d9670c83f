/**
 * The network address of a pod.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"

/**
 * The type id of a `PodAddress`: the symbol-keyed property every instance carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/PodAddress": "@effect/cluster/PodAddress"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/PodAddress")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * A pod's address: host and port. Two addresses are equal when host and port are.
 *
 * @since 0.1.0
 * @category models
 */
export class PodAddress extends Schema.Class<PodAddress>("@effect-cluster/cluster/PodAddress")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/PodAddress"),
  host: Schema.String,
  port: Schema.Int
}) {
  /**
   * @since 0.1.0
   */
  override toString(): string {
    return `PodAddress(${this.host}:${this.port})`
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (host: string, port: number): PodAddress => new PodAddress({ host, port })

/**
 * @since 0.1.0
 * @category guards
 */
export const isPodAddress = (u: unknown): u is PodAddress => Predicate.isObject(u) && u instanceof PodAddress

/**
 * The schema of a pod address.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<PodAddress, Schema.Schema.Encoded<typeof PodAddress>> = PodAddress

/**
 * A string key for maps (`host:port`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const key = (address: PodAddress): string => `${address.host}:${address.port}`
