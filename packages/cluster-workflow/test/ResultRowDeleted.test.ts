/**
 * A caller awaiting a result through the journal (the execution runs elsewhere or is suspended) ends with
 * a typed `ExecutionNotFoundError` when the execution's row is deleted while it waits (issue 9, "correct
 * only by luck": `pollResult` never ended). SQL journals (SQLite file, PostgreSQL): the row is deleted with
 * one statement, as an operator or a retention job of one's own would.
 */
import { WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option } from "effect"
import * as DurableExecutionJournal from "../src/DurableExecutionJournal.js"
import * as DurableExecutionJournalSql from "../src/DurableExecutionJournalSql.js"
import * as Workflow from "../src/Workflow.js"
import * as WorkflowError from "../src/WorkflowError.js"
import { payloadHash } from "../src/internal/codec.js"
import { Order } from "./utils/fixtures.js"
import { describeJournals, dropTables, sqlJournalCases, start, uniquePrefix } from "./utils/journals.js"

describeJournals("a result awaited through the journal", (journalCase) => {
  it.scopedLive("ends with ExecutionNotFoundError when the row is deleted", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("gone")
      yield* Effect.addFinalizer(() => Effect.ignore(dropTables(prefix)))
      const journal = yield* DurableExecutionJournalSql.make({ prefix })
      const sql = yield* SqlClient.SqlClient
      const key = { workflow: "Order", executionId: "o1" }
      const payload = JSON.stringify({ _tag: "Order", orderId: "o1", amount: 1 })
      const [created] = yield* journal.commit([start(key, {
        payload,
        payloadHash: payloadHash(payload),
        version: "",
        owner: "other-engine",
        claimUntil: Date.now() + 60_000,
        now: Date.now()
      })])
      assert(created?._tag === "Created")
      // suspended on a timer a year away: nothing wakes it while the caller waits
      const [suspended] = yield* journal.commit([{
        _tag: "Suspend",
        key,
        fence: { owner: "other-engine", epoch: created.epoch },
        inboxVersion: 0,
        suspendedOn: "timer",
        wakeAt: Date.now() + 365 * 24 * 3600_000,
        now: Date.now()
      }])
      expect(suspended).toEqual({ _tag: "Ok" })
      // the real journal, telling when the caller has read the row (so the deletion comes after it)
      const read = yield* Deferred.make<void>()
      const observed: DurableExecutionJournal.Journal = {
        ...journal,
        get: (k) => Effect.tap(journal.get(k), (row) => Option.isSome(row) ? Deferred.succeed(read, undefined) : Effect.void)
      }
      const engine = yield* WorkflowEngine.makeScoped(Workflow.make(Order, (order) => Effect.succeed(order.amount))).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, observed)
      )
      const waiting = yield* Effect.fork(engine.result("o1"))
      yield* Deferred.await(read)
      const tables = yield* DurableExecutionJournalSql.tableNames(prefix)
      yield* sql`DELETE FROM ${sql(tables.executions)} WHERE workflow = 'Order' AND execution_id = 'o1'`
      const exit = yield* Fiber.join(waiting).pipe(Effect.timeout("20 seconds"), Effect.exit)
      assert(Exit.isFailure(exit))
      const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      expect(error).toBeInstanceOf(WorkflowError.ExecutionNotFoundError)
    }).pipe(Effect.provide(journalCase.sqlLayer!)))
}, sqlJournalCases)
