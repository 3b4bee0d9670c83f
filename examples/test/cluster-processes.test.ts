import { describe, expect, it } from "@effect/vitest"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { main } from "../cluster/main.js"

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("examples/cluster (pnpm example:cluster)", () => {
  // Real processes on the real clock: a manager on a SQLite file (PostgreSQL with DATABASE_URL) and three pods.
  it.live("a client talks to a manager and three pod processes; everything is cleaned up afterwards", () =>
    Effect.gen(function*() {
      const run = yield* main
      expect(run.rows.length).toBe(10)
      const first = new Map(run.rows.slice(0, 5).map((row) => [row.counter, row]))
      for (const row of run.rows.slice(0, 5)) {
        expect(row.count).toBe(1)
        expect(["pod-1", "pod-2", "pod-3"]).toContain(row.pod)
      }
      for (const row of run.rows.slice(5)) {
        expect(["pod-1", "pod-2", "pod-3"]).toContain(row.pod)
        // Same pod: the counter kept its state; moved by a balancing round meanwhile: a fresh instance.
        expect(row.count).toBe(row.pod === first.get(row.counter)!.pod ? 2 : 1)
      }
      expect(run.pids.length).toBe(4)
      expect(run.pids.filter(alive)).toEqual([])
      expect(existsSync(run.dir)).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 240_000 })
})
