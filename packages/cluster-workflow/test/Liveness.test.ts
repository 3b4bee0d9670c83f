/**
 * Issue 9, "Done when" (#4, #9), with real processes and the DEFAULT engine options, on SQLite and
 * PostgreSQL:
 *
 * 1. A process is SIGKILLed inside an activity body; another process is started at once (another random
 *    identity, nobody sends or awaits the execution; see process/restart.ts). It resumes the execution
 *    (the activity's next attempt) by liveness, not by lease: the dead engine is known dead at once
 *    (PostgreSQL: its session is gone; SQLite: its pid is gone), so the execution resumes before the dead
 *    engine's claim would have ended (its `claim_until`, read before the kill), and the new engine, not
 *    the dead one, holds it at a later epoch.
 * 2. The execution then waits for a signal. A third, short-lived process (a CLI) stores the signal and
 *    exits: the workflow, suspended in the second process, continues (PostgreSQL: NOTIFY; SQLite: the
 *    200 ms data_version poll). The short-lived process keeps no claim: the workflow's last step runs in
 *    the second process.
 *
 * The latencies (SIGKILL to the resumed step, engine start to the resumed step, CLI signal to the
 * workflow) are printed, not asserted: tests never assert on wall-clock time; `pnpm bench` (bench/restart.ts)
 * measures the restart.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type * as Scope from "effect/Scope"
import type { ExecutionRow } from "../src/DurableExecutionJournal.js"
import { type Database, postgresDatabase, sqliteDatabase } from "./process/database.js"
import { spawnChild } from "./process/harness.js"
import { killAndRestart, livenessConfig, taskKey } from "./process/restart.js"
import { postgresSkipReason } from "./utils/journals.js"

const livenessSuite = (open: Effect.Effect<Database, never, Scope.Scope>) => {
  it.live("a killed process's execution resumes in a new process by liveness; a CLI's signal wakes it", () =>
    Effect.gen(function*() {
      const db = yield* open
      const restart = yield* killAndRestart({ ...db, get: db.journal.get })
      const { deadClaim, second } = restart
      expect(restart.attempt).toBe(1)
      // Resumed by liveness: before the dead engine's claim would have expired (a take-over at the claim's
      // end could only start at claim_until or later), and the new engine took the claim over.
      expect(restart.resumedAt).toBeLessThan(deadClaim.claimUntil)
      // the execution now waits for its signal, suspended
      let row = Option.none<ExecutionRow>()
      for (let i = 0; i < 500; i++) {
        row = yield* Effect.orDie(db.journal.get(taskKey))
        if (Option.isSome(row) && row.value.status === "suspended") break
        yield* Effect.sleep("10 millis")
      }
      expect(Option.map(row, (r) => r.status)).toEqual(Option.some("suspended"))
      expect(Option.getOrThrow(row).claimEpoch).toBeGreaterThan(deadClaim.epoch)
      const cli = yield* spawnChild(`${db.dialect} cli`, "livenessChild.ts", livenessConfig(db, "signal", { executionId: "t1" }))
      yield* cli.expect("booted", 20_000)
      yield* cli.expect("starting", 20_000)
      const signalled = yield* cli.expect("signalled", 10_000)
      expect(signalled.info.stored).toBe(true)
      const done = yield* second.expect("done", 10_000)
      const signalMillis = done.at - signalled.at
      expect(done.info.value).toBe(42)
      yield* cli.awaitExit()
      console.log(
        `[liveness ${db.dialect}] SIGKILL -> resumed step ${restart.killToResumeMillis.toFixed(0)} ms (the new ` +
          `process's Node start-up ${restart.bootMillis.toFixed(0)} ms, journal open ` +
          `${restart.journalOpenMillis.toFixed(0)} ms, engine start -> step ${restart.engineToResumeMillis.toFixed(0)} ms; ` +
          `${(deadClaim.claimUntil - restart.resumedAt).toFixed(0)} ms before the dead claim's end); ` +
          `signal from a CLI reached the workflow in ${signalMillis.toFixed(1)} ms`
      )
    }).pipe(Effect.scoped), 90_000)
}

describe("liveness across processes [sqlite]", () => {
  livenessSuite(sqliteDatabase("liveness"))
})

if (postgresSkipReason === undefined) {
  describe("liveness across processes [postgres]", () => {
    livenessSuite(postgresDatabase("liveness"))
  })
}
