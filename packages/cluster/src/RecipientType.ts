/**
 * Recipient types: entity types (one instance per entity id, on the pod owning its shard) and topic types
 * (one instance per topic id on every pod).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Equal from "effect/Equal"
import * as Hash from "effect/Hash"
import * as Predicate from "effect/Predicate"
import type * as Schema from "effect/Schema"
import { shardIdOf } from "./internal/hash.js"
import { ShardId } from "./ShardId.js"

/**
 * An entity type: a name and the schema of its messages (usually a union of `Message.TaggedMessage`
 * classes). Equality uses the tag and the name only.
 *
 * @since 0.1.0
 * @category models
 */
export class EntityType<Msg> extends Data.TaggedClass("EntityType")<{
  readonly name: string
  readonly schema: Schema.Schema<Msg, any>
}> {
  /**
   * @since 0.1.0
   */
  [Equal.symbol](that: unknown): boolean {
    return that instanceof EntityType && that.name === this.name
  }
  /**
   * @since 0.1.0
   */
  [Hash.symbol](): number {
    return Hash.cached(this, Hash.string("EntityType/" + this.name))
  }
}

/**
 * A topic type: a name and the schema of its messages. Broadcasts reach the topic's instance on every pod.
 *
 * @since 0.1.0
 * @category models
 */
export class TopicType<Msg> extends Data.TaggedClass("TopicType")<{
  readonly name: string
  readonly schema: Schema.Schema<Msg, any>
}> {
  /**
   * @since 0.1.0
   */
  [Equal.symbol](that: unknown): boolean {
    return that instanceof TopicType && that.name === this.name
  }
  /**
   * @since 0.1.0
   */
  [Hash.symbol](): number {
    return Hash.cached(this, Hash.string("TopicType/" + this.name))
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export type RecipientType<Msg> = EntityType<Msg> | TopicType<Msg>

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeEntityType = <Msg, I>(name: string, schema: Schema.Schema<Msg, I>): EntityType<Msg> =>
  new EntityType({ name, schema })

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeTopicType = <Msg, I>(name: string, schema: Schema.Schema<Msg, I>): TopicType<Msg> =>
  new TopicType({ name, schema })

/**
 * @since 0.1.0
 * @category guards
 */
export const isRecipientType = (u: unknown): u is RecipientType<unknown> =>
  Predicate.isObject(u) && (u instanceof EntityType || u instanceof TopicType)

/**
 * The shard of an entity id (`|Hash.string(entityId) % numberOfShards| + 1`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const getShardId = (entityId: string, numberOfShards: number): ShardId =>
  new ShardId({ value: shardIdOf(entityId, numberOfShards) })
