/**
 * On PostgreSQL a claim does not wait for a row locked by another transaction (a process paused
 * mid-transaction, an admin's open transaction): one due execution's locked row must not stop the
 * engine's timer for the other due executions (the locked one is tried again later, with back-off).
 */
import { DurableExecutionJournal, DurableExecutionJournalSql, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { awaitStatus } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { failingClaimsOf, postgresSkipReason, sharedPostgres, start } from "./utils/journals.js"
import { isRowLocked } from "../src/internal/rowLocked.js"

/**
 * A journal on fresh PostgreSQL tables, and `lockRow`: another session locks an execution's row and leaves
 * its transaction open; the returned effect ends that transaction (so does the scope's end).
 */
const journalBesideAnotherSession = Effect.gen(function*() {
  const shared = yield* sharedPostgres
  const journal = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
  const other = Context.get(yield* Layer.build(shared.journal()), SqlClient.SqlClient)
  const lockRow = (executionId: string, mode: "FOR UPDATE" | "FOR SHARE" = "FOR UPDATE") =>
    Effect.gen(function*() {
      const t = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${other(t.executions)} WHERE execution_id = ${executionId} ${other.literal(mode)}`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      return Effect.zipRight(Deferred.succeed(unlock, undefined), Fiber.join(holder))
    })
  return { journal, lockRow }
})

/**
 * A workflow whose one activity waits for `free`, and executions of it left running: engine A starts the
 * orders given and shuts down while their activity runs (their claims released); `free` is then completed.
 * `bodies.started` counts the activity's runs; `engineOn` builds another engine of the workflow (on `journal`
 * unless told).
 */
const leftRunning = (journal: DurableExecutionJournal.Journal, orders: ReadonlyArray<Order>) =>
  Effect.gen(function*() {
    const log = new RunLog()
    const bodies = { started: 0 }
    const free = yield* Deferred.make<void>()
    const workflow = Workflow.make(Order, (order) =>
      recorded(log, "charge", order.amount, Schema.Number, {
        body: Effect.zipRight(Effect.sync(() => bodies.started++), Deferred.await(free))
      }))
    const engineOn = (options: WorkflowEngine.EngineOptions, on: DurableExecutionJournal.Journal = journal) =>
      WorkflowEngine.make(workflow, options).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, on)
      )
    yield* Effect.scoped(Effect.gen(function*() {
      const a = yield* engineOn({ identity: "A" })
      for (const order of orders) yield* a.sendDiscard(order)
      while (bodies.started < orders.length) yield* Effect.sleep("20 millis")
    }))
    yield* Deferred.succeed(free, undefined)
    return { bodies, engineOn }
  })

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL: a row locked by another transaction", () => {
  // Another claim's probe of the row holds it in share mode: the claim's update skips the row, and a share
  // probe of its own sees no lock. The row is claimable: it was locked, and is tried again, never reported as
  // claimed by another engine (which dropped the wake-up of a parent whose child had just finished: it
  // waited for the next periodic look, a lease later, 30 s).
  it.live("a claim that meets a row locked in share mode takes it as locked, not as claimed by another engine", () =>
    Effect.gen(function*() {
      const { journal, lockRow } = yield* journalBesideAnotherSession
      const key = { workflow: "Order", executionId: "shared" }
      const now = Date.now()
      expect((yield* journal.commit([start(key, { owner: "A", claimUntil: now + 30_000, now })]))[0]?._tag).toBe("Created")
      const unlock = yield* lockRow("shared", "FOR SHARE")
      const whileLocked = yield* Effect.either(journal.claim(key, "A", now, now + 30_000))
      expect(whileLocked._tag === "Left" && isRowLocked(whileLocked.left)).toBe(true)
      yield* unlock
      expect((yield* journal.claim(key, "A", now, now + 30_000))._tag).toBe("Claimed")
    }).pipe(Effect.scoped), 60_000)

  it.live("an execution due is resumed though another due execution's row is locked", () =>
    Effect.gen(function*() {
      const { journal, lockRow } = yield* journalBesideAnotherSession
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          yield* Workflow.sleep("wait", "2 seconds")
          return yield* recorded(log, "after", order.amount, Schema.Number)
        }))
      const engine = yield* WorkflowEngine.make(workflow, { identity: "A" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* engine.sendDiscard(new Order({ orderId: "o2", amount: 2 }))
      yield* awaitStatus(engine, "o2", "Suspended")
      // another session locks o1's row and leaves its transaction open
      const unlock = yield* lockRow("o1")
      // o2's deadline passes: it must resume though o1's claim waits
      const o2 = yield* Effect.exit(engine.result("o2", { timeout: "15 seconds" }))
      yield* unlock
      expect(o2).toEqual(Exit.succeed(Exit.succeed(2)))
    }).pipe(Effect.scoped), 60_000)

  it.live("an engine starts and resumes the other executions left running though one's row is locked", () =>
    Effect.gen(function*() {
      const { journal, lockRow } = yield* journalBesideAnotherSession
      // Engine A left two executions running.
      const { engineOn } = yield* leftRunning(journal, [
        new Order({ orderId: "o1", amount: 1 }),
        new Order({ orderId: "o2", amount: 2 })
      ])
      // another session locks o1's row (the first one resumed) and leaves its transaction open
      const unlock = yield* lockRow("o1")
      // Engine B starts (resuming what was left) and runs o2 to its end while o1's row is locked
      const b = yield* Effect.timeout(engineOn({ identity: "B" }), "15 seconds")
      const o2 = yield* Effect.exit(b.result("o2", { timeout: "15 seconds" }))
      yield* unlock
      expect(o2).toEqual(Exit.succeed(Exit.succeed(2)))
    }).pipe(Effect.scoped), 60_000)
})

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL: a claim that meets a row locked for long", () => {
  // The claim gives up on a locked row after a moment (~155 ms) and the start answers "running"; the
  // execution must still run once the lock ends, though this engine never looks for orphans (the
  // default): the claim is tried again in the background until the row is free.
  it.live("a start of an unfinished execution whose row stays locked runs it once the lock ends", () =>
    Effect.gen(function*() {
      const { journal, lockRow } = yield* journalBesideAnotherSession
      // Engine A left o1 running.
      const { bodies, engineOn } = yield* leftRunning(journal, [new Order({ orderId: "o1", amount: 1 })])
      // Engine B does not resume on start; another session locks o1's row and leaves its transaction open.
      const b = yield* engineOn({ identity: "B", resumeOnStart: false })
      const unlock = yield* lockRow("o1")
      // The start finds o1 unfinished and tries to claim it: the row is locked past the claim's retries.
      yield* b.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      expect(bodies.started).toBe(1)
      yield* unlock
      const done = yield* Effect.timeout(awaitStatus(b, "o1", "Completed"), "15 seconds")
      expect(done._tag).toBe("Completed")
      expect(bodies.started).toBe(2)
    }).pipe(Effect.scoped), 60_000)

  // The lock ends while the database has a passing failure (a dropped connection): the background claim
  // meets that failure, not the lock, and must go on, not end with the execution never run.
  it.live("a background claim goes on through passing journal failures after the lock ends", () =>
    Effect.gen(function*() {
      const { journal, lockRow } = yield* journalBesideAnotherSession
      const { bodies, engineOn } = yield* leftRunning(journal, [new Order({ orderId: "o1", amount: 1 })])
      const failing = failingClaimsOf(journal, "Order", { message: "connection lost", retryable: true })
      const b = yield* engineOn({ identity: "B", resumeOnStart: false, claimLease: "10 minutes" }, failing.journal)
      const unlock = yield* lockRow("o1")
      yield* b.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      // the next three claims fail passingly (the background claim's first attempts after the lock)
      failing.failNext(3)
      yield* unlock
      const done = yield* Effect.timeout(awaitStatus(b, "o1", "Completed"), "20 seconds")
      expect(done._tag).toBe("Completed")
      expect(bodies.started).toBe(2)
    }).pipe(Effect.scoped), 60_000)
})
