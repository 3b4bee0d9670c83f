/**
 * Events published by the shard manager (`ShardManager.getShardingEvents`).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as HashSet from "effect/HashSet"
import type { PodAddress } from "./PodAddress.js"
import type { ShardId } from "./ShardId.js"

/**
 * @since 0.1.0
 * @category models
 */
export type ShardingEvent = Data.TaggedEnum<{
  /** Shards were given to a pod (each with a new, higher epoch). */
  ShardsAssigned: { readonly pod: PodAddress; readonly shards: HashSet.HashSet<ShardId> }
  /** Shards left a pod (it confirmed stopping their entities, or its lease ended). */
  ShardsUnassigned: { readonly pod: PodAddress; readonly shards: HashSet.HashSet<ShardId> }
  /** The manager checked a pod's health after a report or a missed lease renewal. */
  PodHealthChecked: { readonly pod: PodAddress }
  /** A pod registered. */
  PodRegistered: { readonly pod: PodAddress }
  /** A pod left: gracefully, or declared dead once its lease had certainly ended. */
  PodUnregistered: { readonly pod: PodAddress }
}>

const constructors = Data.taggedEnum<ShardingEvent>()

/**
 * @since 0.1.0
 * @category constructors
 */
export const ShardsAssigned = (pod: PodAddress, shards: HashSet.HashSet<ShardId>): ShardingEvent =>
  constructors.ShardsAssigned({ pod, shards })

/**
 * @since 0.1.0
 * @category constructors
 */
export const ShardsUnassigned = (pod: PodAddress, shards: HashSet.HashSet<ShardId>): ShardingEvent =>
  constructors.ShardsUnassigned({ pod, shards })

/**
 * @since 0.1.0
 * @category constructors
 */
export const PodHealthChecked = (pod: PodAddress): ShardingEvent => constructors.PodHealthChecked({ pod })

/**
 * @since 0.1.0
 * @category constructors
 */
export const PodRegistered = (pod: PodAddress): ShardingEvent => constructors.PodRegistered({ pod })

/**
 * @since 0.1.0
 * @category constructors
 */
export const PodUnregistered = (pod: PodAddress): ShardingEvent => constructors.PodUnregistered({ pod })

/**
 * @since 0.1.0
 * @category pattern matching
 */
export const match = constructors.$match
