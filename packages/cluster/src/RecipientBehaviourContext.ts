/**
 * What a running entity knows about itself.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { RecipientAddress } from "./RecipientAddress.js"
import type { RecipientType } from "./RecipientType.js"
import type { ShardId } from "./ShardId.js"

/**
 * The context of an entity (or topic) instance: its address, shard and type, and `forkShutdown`, which asks
 * for the instance's own graceful stop (the next message starts a fresh one). `epoch` is the shard's epoch
 * (fencing token) under which the instance was started: `FencedWrite` makes an `@effect/sql` write commit
 * only while it is still the shard's current epoch in the cluster's storage.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecipientBehaviourContext {
  readonly recipientAddress: RecipientAddress
  readonly shardId: ShardId
  readonly recipientType: RecipientType<unknown>
  readonly forkShutdown: Effect.Effect<void>
  /** How long the instance may take to stop (`ShardingConfig.entityTerminationTimeout`). */
  readonly terminationTimeout?: Duration.Duration | undefined
  /** How many accepted messages a mailbox may hold (`ShardingConfig.entityMailboxCapacity`). */
  readonly mailboxCapacity?: number | undefined
  /** How many replies an instance remembers by primary key (`ShardingConfig.entityDeduplicationCapacity`). */
  readonly deduplicationCapacity?: number | undefined
  /**
   * The epoch of `shardId` this pod held when the instance started (it keeps it for its whole life: an
   * instance is stopped when its shard leaves the pod). `0` for topics, which belong to no shard, and
   * absent in contexts built by hand.
   */
  readonly epoch?: number | undefined
}

/**
 * @since 0.1.0
 * @category context
 */
export const RecipientBehaviourContext: Context.Tag<RecipientBehaviourContext, RecipientBehaviourContext> = Context
  .GenericTag<RecipientBehaviourContext>("@effect-cluster/cluster/RecipientBehaviourContext")

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (context: RecipientBehaviourContext): RecipientBehaviourContext => context

/**
 * @since 0.1.0
 * @category accessors
 */
export const recipientAddress: Effect.Effect<RecipientAddress, never, RecipientBehaviourContext> = Effect.map(
  RecipientBehaviourContext,
  (_) => _.recipientAddress
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const entityId: Effect.Effect<string, never, RecipientBehaviourContext> = Effect.map(
  RecipientBehaviourContext,
  (_) => _.recipientAddress.entityId
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const shardId: Effect.Effect<ShardId, never, RecipientBehaviourContext> = Effect.map(
  RecipientBehaviourContext,
  (_) => _.shardId
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const recipientType: Effect.Effect<RecipientType<unknown>, never, RecipientBehaviourContext> = Effect.map(
  RecipientBehaviourContext,
  (_) => _.recipientType
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const forkShutdown: Effect.Effect<void, never, RecipientBehaviourContext> = Effect.flatMap(
  RecipientBehaviourContext,
  (_) => _.forkShutdown
)

/**
 * The shard epoch under which the instance runs (see `RecipientBehaviourContext.epoch`; 0 when unknown).
 *
 * @since 0.1.0
 * @category accessors
 */
export const epoch: Effect.Effect<number, never, RecipientBehaviourContext> = Effect.map(
  RecipientBehaviourContext,
  (_) => _.epoch ?? 0
)
