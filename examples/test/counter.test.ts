import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { format, main } from "../counter.js"

describe("examples/counter.ts", () => {
  // Real clock: the example is a real program (leases, rounds and retries run on live time).
  it.live("answers every message before and after a pod leaves and another joins", () =>
    Effect.gen(function*() {
      const rows = yield* main
      expect(rows.length).toBe(8)
      for (const row of rows) {
        expect(["pod-1", "pod-2", "pod-3"]).toContain(row.before.pod)
        expect(row.before.count).toBe(2)
        expect(["pod-1", "pod-3", "pod-4"]).toContain(row.after.pod)
        // Same pod: the entity kept its state; moved: a fresh instance on the new owner.
        expect(row.after.count).toBe(row.after.pod === row.before.pod ? 4 : 2)
      }
      expect(format(rows)).toContain("| counter-0 |")
    }))
})
