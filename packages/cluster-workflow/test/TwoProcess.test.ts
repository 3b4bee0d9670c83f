/**
 * One runner per execution without the cluster (issue 5, DESIGN.md section 3), with real processes: two
 * engines in two Node processes on one database, both sent the same executions and both resuming at start-up.
 *
 * 1. A first process (identity `engine-dead`, a short lease) starts some executions and is SIGKILLed inside
 *    an activity body (after its side effect), leaving them unfinished and claimed by a dead engine.
 * 2. Once those claims have expired, processes A and B start at the same moment: each builds an engine
 *    (resuming unfinished executions at start-up) and sends every execution (the crashed ones and fresh
 *    ones). The parent holds every activity at its first gate until both processes have started (or joined)
 *    every execution, so both are callers while the executions run.
 *
 * PostgreSQL: each activity body runs once (bar the crash: the interrupted body runs once more, in one of the
 * two; and in `engine-dead`, whose lease is short, a body in flight when it logged that its own lease ended
 * runs once more there, as after a crash), all of an execution's bodies after the crash run in one process, both callers get the same value,
 * and the caller in the process that ran none of an execution's bodies got its result through the journal.
 * SQLite (two processes writing one file): nothing is corrupted or lost: both callers get the same values,
 * every execution completes, the journal is consistent (one result per step, contiguous events, integrity
 * check); a caller that sees an error sees a typed `JournalError` (SQLITE_BUSY after retries), and bodies run
 * once unless such an error was reported.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Fiber, Layer, Logger, LogLevel } from "effect"
import type * as Scope from "effect/Scope"
import { join } from "node:path"
import * as DurableExecutionJournalSql from "../src/DurableExecutionJournalSql.js"
import * as Sqlite from "../src/node/Sqlite.js"
import { activityIds, expectedResult, type SideRow } from "./process/chain.js"
import { chainKey, type Database, journalState, postgresDatabase, sqliteDatabase } from "./process/database.js"
import { type Child, type Line, prepareChildren, spawnChild } from "./process/harness.js"
import { postgresSkipReason, tempDir } from "./utils/journals.js"

interface Execution {
  readonly chainId: string
  readonly amount: number
}

const engineOptions = { claimLease: 3_000, orphanCheckInterval: 500, resultPollInterval: 200 }

const childConfig = (db: Database, identity: string, executions: ReadonlyArray<Execution>, claimLease: number) => ({
  dialect: db.dialect,
  location: db.location,
  prefix: db.prefix,
  identity,
  run: 0,
  executions,
  ...engineOptions,
  claimLease
})

/** The engine's warning when it stops an execution whose claim it could not renew in time. */
const leaseEndedWarning = "claim could not be renewed before its lease ended"

/**
 * The executions for which a child logged that its lease ended before a renewal succeeded (the engine
 * stops such an execution and runs it again once the claim has expired, like after a crash).
 */
const leaseEnded = (child: Child): ReadonlyMap<string, number> => {
  const ended = new Map<string, number>()
  for (const line of child.warnings) {
    if (!line.includes(leaseEndedWarning)) continue
    const id = /executionId=(\S+)/.exec(line)?.[1]
    if (id !== undefined) ended.set(id, (ended.get(id) ?? 0) + 1)
  }
  return ended
}

/**
 * Phase 1: a process starts `executions` and is killed once each of them is inside `charge` (after its side
 * effect, before its result is recorded). Its lease is short, so the claims it leaves expire soon. On a
 * starved machine its own renewal can come late: it then stops the execution, logs why, and runs it again
 * (the body that was in flight runs once more, as after a crash); returns how often that happened per
 * execution.
 */
const crashOne = (db: Database, executions: ReadonlyArray<Execution>) =>
  Effect.scoped(Effect.gen(function*() {
    const child = yield* spawnChild("engine-dead", "raceChild.ts", childConfig(db, "engine-dead", executions, 300))
    yield* child.expect("ready")
    yield* child.send("start")
    const held = new Set<string>()
    while (held.size < executions.length) {
      const line = yield* child.next()
      if (line.kind === "caller-error") return yield* Effect.dieMessage(`${child.describe()}\nunexpected error`)
      if (line.kind !== "gate") continue
      if (line.token.endsWith(":charge:after")) held.add(line.token.split(":")[0]!)
      else yield* child.send(`go ${line.token}`)
    }
    yield* child.kill
    return leaseEnded(child)
  }))

interface Report {
  readonly identity: string
  readonly liveAfterStart: number
  readonly results: Map<string, unknown>
  readonly callerErrors: Array<Line>
}

/** Reads a child's lines until `done`; opens both children's gates once both have started every execution. */
const follow = (child: Child, identity: string, onStarted: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const report: Report = { identity, liveAfterStart: -1, results: new Map(), callerErrors: [] }
    while (true) {
      const line = yield* child.next(45_000)
      switch (line.kind) {
        case "engine":
          ;(report as { liveAfterStart: number }).liveAfterStart = line.info.liveAfterStart
          break
        case "started":
          yield* onStarted
          break
        case "caller-error":
          report.callerErrors.push(line)
          break
        case "result":
          report.results.set(line.token, line.info.exit)
          break
        case "done":
          yield* child.awaitExit()
          return report
      }
    }
  })

const race = (
  db: Database,
  options: { readonly crashed: number; readonly fresh: number }
) =>
  Effect.gen(function*() {
    const crashed = Array.from({ length: options.crashed }, (_, i) => ({ chainId: `crashed${i}`, amount: 10 + i }))
    const fresh = Array.from({ length: options.fresh }, (_, i) => ({ chainId: `fresh${i}`, amount: 20 + i }))
    const executions = [...crashed, ...fresh]

    const deadLeaseEnded = yield* crashOne(db, crashed)
    // The crashed executions' journals after phase 1 (for the report): activity events in order.
    const phase1 = new Map<string, string>()
    for (const { chainId } of crashed) {
      const events = yield* Effect.orDie(db.journal.events(chainKey(chainId), 0))
      phase1.set(
        chainId,
        events.filter((event) => event.stepKind === "activity").map((event) => `${event.kind}(${event.stepId})`).join(" ")
      )
    }
    for (const { chainId } of crashed) {
      const state = yield* journalState(db, chainId)
      expect([...state.recorded], chainId).toEqual(["reserve"])
      expect([...state.started], chainId).toEqual(["reserve", "charge"])
    }

    const a = yield* spawnChild("A", "raceChild.ts", childConfig(db, "engine-A", executions, engineOptions.claimLease))
    // B sends them in the opposite order, so each process creates (and runs) some and joins the others.
    const b = yield* spawnChild(
      "B",
      "raceChild.ts",
      childConfig(db, "engine-B", executions.slice().reverse(), engineOptions.claimLease)
    )
    yield* a.expect("ready")
    yield* b.expect("ready")
    // Both start only once the dead engine's claims have expired, so both race to resume them at start-up.
    // (Waiting for a known deadline, read from the journal, not for a guessed duration.)
    for (const { chainId } of crashed) {
      const row = yield* Effect.orDie(db.journal.get(chainKey(chainId)))
      const until = row._tag === "Some" ? row.value.claimUntil ?? 0 : 0
      const wait = until - Date.now() + 1
      if (wait > 0) yield* Effect.sleep(wait)
    }
    yield* a.send("start")
    yield* b.send("start")
    let started = 0
    const onStarted = Effect.gen(function*() {
      if (++started < 2) return
      yield* a.send("open")
      yield* b.send("open")
    })
    const fibers = [yield* Effect.fork(follow(a, "engine-A", onStarted)), yield* Effect.fork(follow(b, "engine-B", onStarted))]
    const reports = yield* Fiber.joinAll(fibers)
    const rows = yield* db.sideRows
    return { crashed, fresh, executions, reports, rows, deadLeaseEnded, phase1 }
  })

/** What every run must show, on either database. */
const checkCommon = (db: Database, outcome: Effect.Effect.Success<ReturnType<typeof race>>) =>
  Effect.gen(function*() {
    const { executions, reports } = outcome
    for (const report of reports) {
      // Every caller, in both processes, gets the same value (the crash-free one).
      for (const { amount, chainId } of executions) {
        expect(report.results.get(chainId), `${report.identity} ${chainId}`).toEqual({
          _tag: "Success",
          value: expectedResult(amount)
        })
      }
      // A caller that saw an error saw a typed JournalError.
      for (const line of report.callerErrors) {
        expect(line.info, `${report.identity} ${line.token}`).toMatchObject({ tag: "JournalError", retryable: true })
      }
    }
    // The journal: every execution completed, one result per step, contiguous events.
    for (const { chainId } of executions) {
      const row = yield* Effect.orDie(db.journal.get(chainKey(chainId)))
      expect(row._tag === "Some" && row.value.status, chainId).toBe("completed")
      const state = yield* journalState(db, chainId)
      for (const activity of activityIds) expect(state.completions.get(activity), `${chainId} ${activity}`).toBe(1)
      expect(state.contiguous, chainId).toBe(true)
    }
  })

/**
 * Each body once (the crashed `charge` twice), an execution's later bodies all in one of A and B. The one
 * exception: each time `engine-dead` logged that an execution's lease ended (phase 1), the body it had in
 * flight may have run once more, in `engine-dead` itself (A and B start after phase 1, so a body they run
 * twice is a recorded step run again, never allowed).
 */
const checkOnce = (outcome: Effect.Effect.Success<ReturnType<typeof race>>) => {
  const { crashed, deadLeaseEnded, executions, rows } = outcome
  const crashedIds = new Set(crashed.map((e) => e.chainId))
  const runners = new Map<string, string>()
  for (const { chainId } of executions) {
    const mine = rows.filter((row) => row.execution_id === chainId)
    const describe = `${chainId}: ${JSON.stringify(mine)}; engine-dead leases ended: ${deadLeaseEnded.get(chainId) ?? 0}`
    const countIn = (id: string, which: (row: SideRow) => boolean) =>
      mine.filter((row) => row.activity === id && which(row)).length
    const live = mine.filter((row) => row.identity !== "engine-dead")
    const dead = (row: SideRow) => row.identity === "engine-dead"
    const isCrashed = crashedIds.has(chainId)
    // A and B: each body once, bar the crashed `charge` (once more, after the crash).
    expect(Object.fromEntries(activityIds.map((id) => [id, countIn(id, (row) => !dead(row))])), describe).toEqual(
      isCrashed
        ? { reserve: 0, charge: 1, ledger: 1, ship: 1, notify: 1 }
        : { reserve: 1, charge: 1, ledger: 1, ship: 1, notify: 1 }
    )
    if (isCrashed) {
      // engine-dead: `reserve` and `charge` once each, plus at most one run per lease it logged as ended.
      const extra = countIn("reserve", dead) - 1 + countIn("charge", dead) - 1
      expect(countIn("reserve", dead), describe).toBeGreaterThanOrEqual(1)
      expect(countIn("charge", dead), describe).toBeGreaterThanOrEqual(1)
      expect(extra, describe).toBeLessThanOrEqual(deadLeaseEnded.get(chainId) ?? 0)
    }
    const identities = new Set(live.map((row: SideRow) => row.identity))
    expect(identities.size, `${chainId}: bodies ran in ${[...identities]}`).toBe(1)
    runners.set(chainId, [...identities][0]!)
  }
  return runners
}

const raceSuite = (
  name: string,
  database: Effect.Effect<Database, never, Scope.Scope>,
  options: { readonly crashed: number; readonly fresh: number; readonly strict: boolean }
) =>
  it.live(name, () =>
    Effect.gen(function*() {
      yield* prepareChildren
      const db = yield* database
      const outcome = yield* race(db, options)
      yield* checkCommon(db, outcome)
      const errors = outcome.reports.reduce((n, report) => n + report.callerErrors.length, 0)
      const resumedAtStart = outcome.reports.map((report) => report.liveAfterStart)
      if (options.strict || errors === 0) {
        const runners = checkOnce(outcome)
        // The crashed executions were resumed at start-up, each by exactly one of the two engines.
        expect(resumedAtStart.reduce((x, y) => x + y, 0)).toBe(options.crashed)
        // For every execution, the caller in the other process got the result through the journal: that
        // process ran none of its bodies (checkOnce), and there is no other channel between the processes.
        const byA = [...runners.values()].filter((identity) => identity === "engine-A").length
        console.log(
          `[TwoProcess ${db.dialect}] ${outcome.executions.length} executions: ${byA} run by A, ` +
            `${runners.size - byA} by B, resumed at start-up: A ${resumedAtStart[0]}, B ${resumedAtStart[1]}; ` +
            `caller errors: ${errors}; engine-dead stopped at its lease end: ` +
            `${JSON.stringify(Object.fromEntries(outcome.deadLeaseEnded))}, its bodies: ` +
            JSON.stringify(outcome.rows.filter((row) => row.identity === "engine-dead").map((row) =>
              `${row.execution_id}:${row.activity}#${row.attempt}`
            )) + `; journals after phase 1: ${JSON.stringify(Object.fromEntries(outcome.phase1))}`
        )
      } else {
        console.log(`[TwoProcess ${db.dialect}] caller errors (typed JournalError): ${errors}`)
      }
      if (db.dialect === "sqlite") {
        const [check] = yield* Effect.orDie(db.sql.unsafe<{ integrity_check: string }>("PRAGMA integrity_check"))
        expect(check?.integrity_check).toBe("ok")
      }
    }).pipe(Effect.scoped), 120_000) // (45 s at a load of 10 on 2 cores; each child line has its own 45 s bound)

describe("two engines in two processes", () => {
  if (postgresSkipReason === undefined) {
    raceSuite(
      "[postgres] both sent the same executions and resuming at start-up: each body once, same values, the other caller awaits through the journal",
      postgresDatabase("race"),
      { crashed: 2, fresh: 6, strict: true }
    )
  }
  raceSuite(
    "[sqlite] two processes writing one file: nothing corrupted or lost, errors only typed JournalErrors",
    sqliteDatabase("race"),
    { crashed: 2, fresh: 30, strict: false }
  )
})

describe("two writers on one SQLite file (in-process)", () => {
  // A transactional activity's transaction (`journal.sql.withTransaction`) begun while another connection
  // (another process) holds the write lock: BEGIN IMMEDIATE is busy. Found with the SQLite race above, where
  // such an activity's execution stopped with "COMMIT failed, its outcome is unknown" and stalled until its
  // claim expired. The busy BEGIN must be retried before the body runs, like the journal's own transactions.
  it.live("a busy BEGIN of a transactional body is retried before the body runs; the body then runs and commits once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "busy.db")
      const holderSql = Context.get(yield* Layer.build(Layer.orDie(Sqlite.layerClient({ filename }))), SqlClient.SqlClient)
      const context = yield* Layer.build(Layer.orDie(Sqlite.layerClient({ filename, busyTimeout: 0 })))
      const sql = Context.get(context, SqlClient.SqlClient)
      const journal = yield* DurableExecutionJournalSql.make({ prefix: "busy", busyRetries: 1_000 }).pipe(
        Effect.provide(context)
      )
      yield* sql`CREATE TABLE outside (id TEXT NOT NULL)`
      // The other writer holds the write lock.
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(holderSql.withTransaction(Effect.gen(function*() {
        yield* holderSql`INSERT INTO outside (id) VALUES ('holder')`
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      let bodyRuns = 0
      const retried = yield* Deferred.make<void>()
      const logger = Logger.make(({ message }) => {
        if (String(message).includes("busy")) Deferred.unsafeDone(retried, Effect.void)
      })
      const writer = yield* Effect.fork(
        journal.sql!.withTransaction(Effect.gen(function*() {
          bodyRuns++
          yield* sql`INSERT INTO outside (id) VALUES ('mine')`
        })).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
          Logger.withMinimumLogLevel(LogLevel.Debug)
        )
      )
      const first = yield* Effect.raceFirst(
        Effect.as(Deferred.await(retried), "retried while busy" as const),
        Effect.as(Fiber.await(writer), "finished while busy" as const)
      )
      expect(first).toBe("retried while busy")
      expect(bodyRuns, "the body ran while its transaction had not begun").toBe(0)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(writer)
      expect(bodyRuns).toBe(1)
      expect(yield* sql`SELECT id FROM outside ORDER BY id`).toEqual([{ id: "holder" }, { id: "mine" }])
    }).pipe(Effect.scoped))
})
