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

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL: a row locked by another transaction", () => {
  it.live("an execution due is resumed though another due execution's row is locked", () =>
    Effect.gen(function*() {
      const shared = yield* sharedPostgres
      const journal = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
      const other = Context.get(yield* Layer.build(shared.journal()), SqlClient.SqlClient)
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
      const t = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${other(t.executions)} WHERE execution_id = 'o1' FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      // o2's deadline passes: it must resume though o1's claim waits
      const o2 = yield* Effect.exit(engine.result("o2", { timeout: "15 seconds" }))
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      expect(o2).toEqual(Exit.succeed(Exit.succeed(2)))
    }).pipe(Effect.scoped), 60_000)
})
