/**
 * Events published by a pod when something is registered on it (`Sharding.getShardingRegistrationEvents`).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type { EntityType, TopicType } from "./RecipientType.js"

/**
 * @since 0.1.0
 * @category models
 */
export type ShardingRegistrationEvent = Data.TaggedEnum<{
  EntityRegistered: { readonly entityType: EntityType<any> }
  SingletonRegistered: { readonly name: string }
  TopicRegistered: { readonly topicType: TopicType<any> }
}>

const constructors = Data.taggedEnum<ShardingRegistrationEvent>()

/**
 * @since 0.1.0
 * @category constructors
 */
export const EntityRegistered = (entityType: EntityType<any>): ShardingRegistrationEvent =>
  constructors.EntityRegistered({ entityType })

/**
 * @since 0.1.0
 * @category constructors
 */
export const SingletonRegistered = (name: string): ShardingRegistrationEvent =>
  constructors.SingletonRegistered({ name })

/**
 * @since 0.1.0
 * @category constructors
 */
export const TopicRegistered = (topicType: TopicType<any>): ShardingRegistrationEvent =>
  constructors.TopicRegistered({ topicType })

/**
 * @since 0.1.0
 * @category pattern matching
 */
export const match = constructors.$match
