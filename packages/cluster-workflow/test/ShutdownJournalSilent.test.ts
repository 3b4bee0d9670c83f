/**
 * A graceful shutdown gives the engine's claims up and unregisters it; when the database does not answer
 * at that moment (a table locked by a migration or maintenance, a connection that hangs), the engine's
 * scope still closes in bounded time: the release and the unregistration give up after a bound on the
 * live clock (the claims then end at their lease, as after a crash, and the engine says so) and a loop
 * stuck in a query is detached instead of awaited. Here another PostgreSQL session holds the executions
 * table locked (ACCESS EXCLUSIVE) while the engine shuts down with an execution running.
 */
import { DurableExecutionJournal, DurableExecutionJournalSql, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Logger, Schema, Scope } from "effect"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { postgresSkipReason, sharedPostgres } from "./utils/journals.js"

describe.skipIf(postgresSkipReason !== undefined)("shutdown while the database does not answer", () => {
  it.live("the engine's scope closes though its claims cannot be released, and it says they end at their lease", () =>
    Effect.gen(function*() {
      const shared = yield* sharedPostgres
      const journal = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
      const other = Context.get(yield* Layer.build(shared.journal()), SqlClient.SqlClient)
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
        if (logLevel._tag === "Warning") warnings.push(text)
      })
      const log = new RunLog()
      const started = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, (order) =>
        recorded(log, "charge", order.amount, Schema.Number, {
          body: Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
        }))
      const engineScope = yield* Scope.make()
      const engine = yield* WorkflowEngine.make(workflow, { identity: "A" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
        Effect.provide(Logger.add(logger)),
        Scope.extend(engineScope)
      )
      yield* Effect.fork(engine.execute(new Order({ orderId: "o1", amount: 1 })))
      yield* Deferred.await(started)
      // another session locks the executions table and keeps it locked
      const t = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`LOCK TABLE ${other(t.executions)} IN ACCESS EXCLUSIVE MODE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      // (disconnected: a close that does not end is reported by the timeout, not waited for)
      const closed = yield* Effect.timeout(Effect.disconnect(Scope.close(engineScope, Exit.void)), "40 seconds").pipe(
        Effect.exit
      )
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      expect(Exit.isSuccess(closed)).toBe(true)
      expect(warnings.some((w) => w.includes("could not release the engine's claims") && w.includes("lease"))).toBe(true)
    }).pipe(Effect.scoped), 90_000)

  it.live("a shutdown while the database answers stops every loop of the engine (none is left running)", () =>
    Effect.gen(function*() {
      const shared = yield* sharedPostgres
      const journal = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
        if (logLevel._tag === "Warning") warnings.push(text)
      })
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) => recorded(log, "charge", order.amount, Schema.Number))
      const engineScope = yield* Scope.make()
      const engine = yield* WorkflowEngine.make(workflow, { identity: "B" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
        Effect.provide(Logger.add(logger)),
        Scope.extend(engineScope)
      )
      expect(yield* engine.execute(new Order({ orderId: "o2", amount: 2 }))).toBe(2)
      yield* Scope.close(engineScope, Exit.void)
      // a loop that could not be interrupted would be detached after its bound, with this warning, and
      // would keep the process alive (and keep using the journal)
      expect(warnings.filter((w) => w.includes("did not stop"))).toEqual([])
    }).pipe(Effect.scoped), 90_000)
})
