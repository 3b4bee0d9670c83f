/**
 * A pod: one process hosting entities, with the version of its code.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"
import { PodAddress } from "./PodAddress.js"

/**
 * The type id of a `Pod`: the symbol-keyed property every instance carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/Pod": "@effect/cluster/Pod"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/Pod")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * A pod: its address and the version of the code it runs (dotted numbers, e.g. `"1.2.0"`). During a
 * rolling upgrade, shards go only to pods of the highest version.
 *
 * @since 0.1.0
 * @category models
 */
export class Pod extends Schema.Class<Pod>("@effect-cluster/cluster/Pod")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/Pod"),
  address: PodAddress,
  version: Schema.String
}) {
  /**
   * `Pod(host:port, version)`.
   *
   * @since 0.1.0
   */
  override toString(): string {
    return `Pod(${this.address.host}:${this.address.port}, ${this.version})`
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (address: PodAddress, version: string): Pod => new Pod({ address, version })

/**
 * @since 0.1.0
 * @category guards
 */
export const isPod = (u: unknown): u is Pod => Predicate.isObject(u) && u instanceof Pod

/**
 * The schema of a pod.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<Pod, Schema.Schema.Encoded<typeof Pod>> = Pod
