/**
 * Shards: the unit of ownership. Entity ids map to shards `1..numberOfShards`; the shard manager assigns
 * each shard to at most one pod at a time.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"
import { shardIdOf } from "./internal/hash.js"

/**
 * The type id of a `ShardId`: the symbol-keyed property every instance carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/ShardId": "@effect/cluster/ShardId"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/ShardId")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * A shard number, `1..numberOfShards`.
 *
 * @since 0.1.0
 * @category models
 */
export class ShardId extends Schema.Class<ShardId>("@effect-cluster/cluster/ShardId")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/ShardId"),
  value: Schema.Int
}) {
  /**
   * @since 0.1.0
   */
  override toString(): string {
    return `ShardId(${this.value})`
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (value: number): ShardId => new ShardId({ value })

/**
 * The schema of a shard id.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<ShardId, Schema.Schema.Encoded<typeof ShardId>> = ShardId

/**
 * The shard of an entity id: `|Hash.string(entityId) % numberOfShards| + 1`, with effect's `Hash.string`
 * (a djb2 variant). Only the entity id is hashed, so entities of different types with the same id share a
 * shard. Stable across processes and releases.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromEntityId = (entityId: string, numberOfShards: number): ShardId =>
  make(shardIdOf(entityId, numberOfShards))
