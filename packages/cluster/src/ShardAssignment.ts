/**
 * One row of the shard manager's assignment table: a shard, its owner (if any) and its epoch.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { PodAddress } from "./PodAddress.js"

/**
 * A shard's assignment. `epoch` is the fencing token: it grows by one each time the shard gets a new owner,
 * never decreases (the manager persists it before announcing it), and a pod accepts work for a shard only
 * while it holds the shard's current epoch.
 *
 * @since 0.1.0
 * @category models
 */
export class ShardAssignment extends Schema.Class<ShardAssignment>("@effect-cluster/cluster/ShardAssignment")({
  shardId: Schema.Int,
  pod: Schema.NullOr(PodAddress),
  epoch: Schema.Int
}) {}

/**
 * A lease grant: the manager's answer to a pod's heartbeat. The pod holds the shards listed with its
 * address for `leaseDurationMillis`, measured on its own monotonic clock from the moment it *sent* the
 * heartbeat. The full table doubles as the pod's routing table.
 *
 * @since 0.1.0
 * @category models
 */
export class LeaseGrant extends Schema.Class<LeaseGrant>("@effect-cluster/cluster/LeaseGrant")({
  leaseDurationMillis: Schema.Number,
  assignments: Schema.Array(ShardAssignment)
}) {}

/**
 * What a pod reports with each heartbeat: its version, and the shards it released gracefully with the
 * epoch it held them at (so a manager that missed the confirmation can still reassign them).
 *
 * @since 0.1.0
 * @category models
 */
export class HeartbeatRequest extends Schema.Class<HeartbeatRequest>("@effect-cluster/cluster/HeartbeatRequest")({
  podAddress: PodAddress,
  version: Schema.String,
  released: Schema.Array(Schema.Struct({ shardId: Schema.Int, epoch: Schema.Int }))
}) {}
