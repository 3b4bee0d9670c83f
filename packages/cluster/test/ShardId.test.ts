import { RecipientType, ShardId } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck, Hash } from "effect"

describe("ShardId", () => {
  it("pins the entity id -> shard mapping (300 and 30 shards)", () => {
    const pinned: ReadonlyArray<readonly [string, number, number]> = [
      ["", 282, 12],
      ["a", 5, 5],
      ["counter-1", 186, 6],
      ["user-42", 272, 2],
      ["order-123", 63, 3],
      ["hello world", 44, 14],
      ["é", 185, 5]
    ]
    for (const [entityId, of300, of30] of pinned) {
      expect(ShardId.fromEntityId(entityId, 300).value).toBe(of300)
      expect(RecipientType.getShardId(entityId, 30).value).toBe(of30)
    }
  })

  it("matches the djb2 description computed by hand", () => {
    // "" -> h = 5381 -> 5381 % 300 = 281 -> shard 282
    expect(ShardId.fromEntityId("", 300).value).toBe(5381 % 300 + 1)
    // "a": h = (5381 * 33) ^ 97 = 177573 ^ 97 = 177604 (bit 30 clear, so optimize leaves it) -> 177604 % 300 = 4
    expect((5381 * 33) ^ 97).toBe(177604)
    expect(ShardId.fromEntityId("a", 300).value).toBe(5)
    // "ab": iterate from the end: h = ((5381 * 33) ^ 98) * 33 ^ 97
    const h = ((((5381 * 33) ^ 98) * 33) ^ 97)
    const optimized = (h & 0xbfffffff) | ((h >>> 1) & 0x40000000)
    expect(ShardId.fromEntityId("ab", 300).value).toBe(Math.abs(optimized % 300) + 1)
    expect(optimized).toBe(Hash.string("ab"))
  })

  it("always lands in 1..numberOfShards", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.string(), FastCheck.integer({ min: 1, max: 1000 }), (entityId, shards) => {
        const shard = ShardId.fromEntityId(entityId, shards).value
        return Number.isInteger(shard) && shard >= 1 && shard <= shards
      })
    )
  })

  it("prints as ShardId(n) and compares structurally", () => {
    expect(String(ShardId.make(7))).toBe("ShardId(7)")
    expect(ShardId.make(7)).toEqual(ShardId.make(7))
  })
})
