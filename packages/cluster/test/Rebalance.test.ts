import { ShardManager } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"

const {
  compareVersion,
  decideAssignmentsForUnassignedShards,
  decideAssignmentsForUnbalancedShards,
  maxMovesPerRound
} = ShardManager.RebalancePolicy

const state = (
  pods: ReadonlyArray<readonly [string, string]>,
  assignments: ReadonlyArray<string | undefined>
): ShardManager.RebalanceState => ({
  numberOfShards: assignments.length,
  pods: pods.map(([key, version]) => ({ key, version })),
  assignments
})

const toObject = (map: Map<string, Array<number>>) => Object.fromEntries(map)

describe("Rebalancing (pure)", () => {
  it("moves one of two shards to an empty pod", () => {
    const plan = decideAssignmentsForUnbalancedShards(state([["a", "1"], ["b", "1"]], ["a", "a"]), 1)
    expect(toObject(plan.unassignments)).toEqual({ a: [2] })
    expect(toObject(plan.assignments)).toEqual({ b: [2] })
  })

  it("gives no shard to a pod with an older version", () => {
    const plan = decideAssignmentsForUnbalancedShards(state([["a", "1.0.0"], ["b", "0.1.2"]], ["a", "a"]), 1)
    expect(plan.assignments.size).toBe(0)
    const unassigned = decideAssignmentsForUnassignedShards(
      state([["a", "1.0.0"], ["b", "0.1.2"]], [undefined, undefined, undefined])
    )
    expect(toObject(unassigned.assignments)).toEqual({ a: [1, 2, 3] })
  })

  it("drains pods of an older version towards the newest (rolling upgrade)", () => {
    const plan = decideAssignmentsForUnbalancedShards(state([["old", "1.0.0"], ["new", "1.1.0"]], ["old", "old", "new"]), 1)
    expect(toObject(plan.unassignments)).toEqual({ old: [2, 1] })
    expect(toObject(plan.assignments)).toEqual({ new: [2, 1] })
  })

  it("does nothing when balanced or off by one", () => {
    expect(decideAssignmentsForUnbalancedShards(state([["a", "1"], ["b", "1"]], ["a", "b"]), 1).assignments.size).toBe(0)
    expect(decideAssignmentsForUnbalancedShards(state([["a", "1"], ["b", "1"]], ["a", "a", "b"]), 1).assignments.size)
      .toBe(0)
  })

  it("moves one shard for a difference of two", () => {
    const plan = decideAssignmentsForUnbalancedShards(state([["a", "1"], ["b", "1"]], ["a", "a", "a", "b"]), 1)
    expect(toObject(plan.assignments)).toEqual({ b: [3] })
  })

  it("picks the least-loaded pod first", () => {
    const plan = decideAssignmentsForUnbalancedShards(
      state([["a", "1"], ["b", "1"], ["c", "1"]], ["a", "a", "a", "a", "b", "b", "c"]),
      1 / 7
    )
    expect(toObject(plan.assignments)).toEqual({ c: [4] })
    const unassigned = decideAssignmentsForUnassignedShards(state([["a", "1"], ["b", "1"]], ["a", "a", undefined]))
    expect(toObject(unassigned.assignments)).toEqual({ b: [3] })
  })

  it("does nothing without pods", () => {
    expect(decideAssignmentsForUnassignedShards(state([], [undefined])).assignments.size).toBe(0)
    expect(decideAssignmentsForUnbalancedShards(state([], ["x"]), 1).assignments.size).toBe(0)
  })

  it("treats shards of unknown pods as unassigned", () => {
    const plan = decideAssignmentsForUnassignedShards(state([["a", "1"]], ["gone", "a"]))
    expect(toObject(plan.assignments)).toEqual({ a: [1] })
  })

  it("bounds moves per round by the rate", () => {
    expect(maxMovesPerRound(300, 0.02)).toBe(6)
    expect(maxMovesPerRound(30, 0.02)).toBe(1)
    const plan = decideAssignmentsForUnbalancedShards(
      state([["a", "1"], ["b", "1"]], Array.from({ length: 300 }, () => "a")),
      0.02
    )
    expect(plan.assignments.get("b")?.length).toBe(6)
  })

  it("compares versions numerically", () => {
    expect(compareVersion("1.10.0", "1.9.2")).toBe(1)
    expect(compareVersion("1.9.2", "1.10.0")).toBe(-1)
    expect(compareVersion("2.0", "2.0.0")).toBe(0)
  })

  it("converges: repeated rounds balance within one shard, moving at most the budget, never to older pods", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 1, max: 60 }),
        FastCheck.array(FastCheck.constantFrom("1.0.0", "1.1.0"), { minLength: 1, maxLength: 6 }),
        FastCheck.double({ min: 0.01, max: 1, noNaN: true }),
        FastCheck.array(FastCheck.integer({ min: -1, max: 5 }), { minLength: 60, maxLength: 60 }),
        (numberOfShards, versions, rate, owners) => {
          const pods = versions.map((version, i) => ({ key: `p${i}`, version }))
          let assignments: Array<string | undefined> = Array.from(
            { length: numberOfShards },
            (_, i) => owners[i]! >= 0 && owners[i]! < pods.length ? pods[owners[i]!]!.key : undefined
          )
          const newest = versions.includes("1.1.0") ? "1.1.0" : "1.0.0"
          const newKeys = new Set(pods.filter((pod) => pod.version === newest).map((pod) => pod.key))
          const apply = (plan: ShardManager.RebalancePlan) => {
            for (const [key, shards] of plan.assignments) {
              if (!newKeys.has(key)) throw new Error("assigned to an older version")
              for (const shard of shards) assignments[shard - 1] = key
            }
          }
          apply(decideAssignmentsForUnassignedShards({ numberOfShards, pods, assignments }))
          if (assignments.some((owner) => owner === undefined)) return false
          for (let round = 0; round < numberOfShards + 2; round++) {
            const plan = decideAssignmentsForUnbalancedShards({ numberOfShards, pods, assignments }, rate)
            let moved = 0
            for (const shards of plan.assignments.values()) moved += shards.length
            if (moved > maxMovesPerRound(numberOfShards, rate)) return false
            const before = assignments
            assignments = [...before]
            apply(plan)
            if (moved === 0) break
          }
          const counts = [...newKeys].map((key) => assignments.filter((owner) => owner === key).length)
          const onOld = assignments.filter((owner) => !newKeys.has(owner!)).length
          return onOld === 0 && Math.max(...counts) - Math.min(...counts) <= 1
        }
      ),
      { numRuns: 300 }
    )
  })
})
