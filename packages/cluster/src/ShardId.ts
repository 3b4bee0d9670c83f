/**
 * Shards: the unit of ownership. Entity ids map to shards `1..numberOfShards`; the shard manager assigns
 * each shard to at most one pod at a time.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { shardIdOf } from "./internal/hash.js"

/**
 * A shard number, `1..numberOfShards`.
 *
 * @since 0.1.0
 * @category models
 */
export class ShardId extends Schema.Class<ShardId>("@effect-cluster/cluster/ShardId")({
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
export const schema: Schema.Schema<ShardId, { readonly value: number }> = ShardId

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
