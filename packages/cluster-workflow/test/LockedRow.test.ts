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
import { postgresSkipReason, sharedPostgres } from "./utils/journals.js"

/**
 * A journal on fresh PostgreSQL tables, and `lockRow`: another session locks an execution's row and leaves
 * its transaction open; the returned effect ends that transaction (so does the scope's end).
 */
const journalBesideAnotherSession = Effect.gen(function*() {
  const shared = yield* sharedPostgres
  const journal = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
  const other = Context.get(yield* Layer.build(shared.journal()), SqlClient.SqlClient)
  const lockRow = (executionId: string) =>
    Effect.gen(function*() {
      const t = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${other(t.executions)} WHERE execution_id = ${executionId} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      return Effect.zipRight(Deferred.succeed(unlock, undefined), Fiber.join(holder))
    })
  return { journal, lockRow }
})

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL: a row locked by another transaction", () => {
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
      const log = new RunLog()
      const bodies = { started: 0 }
      const free = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, (order) =>
        recorded(log, "charge", order.amount, Schema.Number, {
          body: Effect.zipRight(Effect.sync(() => bodies.started++), Deferred.await(free))
        }))
      // Engine A starts two executions and shuts down while their activity runs: both are left running,
      // their claims released.
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* WorkflowEngine.make(workflow, { identity: "A" }).pipe(
          Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
        )
        yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
        yield* a.sendDiscard(new Order({ orderId: "o2", amount: 2 }))
        while (bodies.started < 2) yield* Effect.sleep("20 millis")
      }))
      yield* Deferred.succeed(free, undefined)
      // another session locks o1's row (the first one resumed) and leaves its transaction open
      const unlock = yield* lockRow("o1")
      // Engine B starts (resuming what was left) and runs o2 to its end while o1's row is locked
      const b = yield* Effect.timeout(
        WorkflowEngine.make(workflow, { identity: "B" }).pipe(
          Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
        ),
        "15 seconds"
      )
      const o2 = yield* Effect.exit(b.result("o2", { timeout: "15 seconds" }))
      yield* unlock
      expect(o2).toEqual(Exit.succeed(Exit.succeed(2)))
    }).pipe(Effect.scoped), 60_000)
})
