import * as Hash from "effect/Hash"

/**
 * The 2024 shard function: `|Hash.string(entityId) % numberOfShards| + 1`. Effect's `Hash.string` is a djb2
 * variant iterating from the last character; it is pure arithmetic, so the mapping is stable across
 * processes and releases (a test pins known values).
 */
export const shardIdOf = (entityId: string, numberOfShards: number): number =>
  Math.abs(Hash.string(entityId) % numberOfShards) + 1
