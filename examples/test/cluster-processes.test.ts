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
      const last = new Map<string, { count: number; pod: string }>()
      for (const row of run.rows) {
        expect(["pod-1", "pod-2", "pod-3"]).toContain(row.pod)
        const previous = last.get(row.counter)
        // Same pod: the counter kept its state; moved by a balancing round: a fresh instance.
        expect(row.count).toBe(previous !== undefined && previous.pod === row.pod ? previous.count + 1 : 1)
        last.set(row.counter, row)
      }
      // Every pod renews its leases in the manager's database.
      expect(run.podsWithDatabaseLeases).toBe(3)
      const finalRound = run.rows.filter((row) => row.round === run.rows.at(-1)!.round)
      expect(new Set(finalRound.map((row) => row.pod)).size).toBe(3)
      expect(run.pids.length).toBe(4)
      expect(run.pids.filter(alive)).toEqual([])
      expect(existsSync(run.dir)).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer)), { timeout: 240_000 })
})
