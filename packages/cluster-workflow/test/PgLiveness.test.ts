/**
 * PostgreSQL engine liveness (issue 9 #4), what the attack9 review found:
 *
 * - engines connected as different (non-superuser) database roles see each other's `backend_start` as
 *   NULL in `pg_stat_activity`: such a session is "cannot tell", never dead;
 * - a live engine whose liveness session ended (a network blip) has its claims taken only after the
 *   grace, by which time it has stopped its executions;
 * - engines of one process started together (one LISTEN connection) all register their liveness session.
 */
import { DurableExecutionJournal, DurableExecutionJournalSql, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Layer, Option, Redacted, Schema } from "effect"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import {
  databaseUrl,
  dropTables,
  key,
  pgClientLayer,
  postgresSkipReason,
  sharedPostgres,
  start,
  uniquePrefix
} from "./utils/journals.js"

const asRole = (role: string) => databaseUrl.replace(/^postgres:\/\/[^@/]*@/, `postgres://${role}@`)

/** Polls `condition` every 50 ms (live clock) until it holds, for at most `seconds`. */
const pollUntil = <E, R>(condition: Effect.Effect<boolean, E, R>, seconds: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    while (!(yield* condition)) {
      if (Date.now() > deadline) return false
      yield* Effect.sleep("50 millis")
    }
    return true
  })

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL engine liveness", () => {
  it.live("an engine connected as another non-superuser role is not judged dead while its session lives, and is once it ends", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("roles")
      const roles = [`${prefix}_a`, `${prefix}_b`]
      const admin = Context.get(yield* Layer.build(pgClientLayer({ maxConnections: 1 })), SqlClient.SqlClient)
      // runs after the journals (built later) closed, while `admin` is still open
      yield* Effect.addFinalizer(() =>
        Effect.forEach(roles, (role) =>
          Effect.ignore(Effect.zipRight(admin.unsafe(`DROP OWNED BY ${role}`), admin.unsafe(`DROP ROLE ${role}`))))
      )
      for (const role of roles) {
        yield* admin.unsafe(`CREATE ROLE ${role} LOGIN`)
        yield* admin.unsafe(`GRANT CREATE, USAGE ON SCHEMA public TO ${role}`)
      }
      yield* Effect.addFinalizer(() => Effect.ignore(Effect.provide(dropTables(prefix), pgClientLayer({ maxConnections: 1 }))))
      const journalAs = (role: string) =>
        Effect.map(
          Layer.build(Layer.provideMerge(
            DurableExecutionJournalSql.layer({ prefix }),
            PgClient.layer({ url: Redacted.make(asRole(role)) })
          )),
          Context.get(DurableExecutionJournal.DurableExecutionJournal)
        )
      const a = yield* journalAs(roles[0]!)
      const t = yield* DurableExecutionJournalSql.tableNames(prefix)
      for (const table of [t.executions, t.events, t.signals, t.engines, t.migrations]) {
        yield* admin.unsafe(`GRANT ALL ON TABLE "${table}" TO ${roles[1]}`)
      }
      const b = yield* journalAs(roles[1]!)
      const regA = yield* a.registerEngine!("A", ["wf"])
      expect(regA.liveness).toEqual("session")
      const now = Date.now()
      yield* a.commit([start(key("x1"), { payload: "{}", payloadHash: "h", owner: "A", claimUntil: now + 600_000, now })])
      const regB = yield* b.registerEngine!("B", ["wf"])
      // B cannot read A's backend_start: it cannot tell, so A's claims stay (and A is not counted as live)
      const released = yield* b.releaseDeadClaims!(regB)
      const liveOthers = yield* b.otherLiveEngines!(regB, "wf")
      const row = Option.getOrThrow(yield* b.get({ workflow: "wf", executionId: "x1" }))
      expect({ released, liveOthers, owner: row.claimOwner }).toEqual({ released: 0, liveOthers: 0, owner: "A" })
      // A's session ends (its pid is gone): now B can tell, and releases A's claims after the grace
      const [regRow] = yield* admin.unsafe<{ backend_pid: number }>(`SELECT backend_pid FROM "${t.engines}" WHERE owner = 'A'`)
      yield* admin`SELECT pg_terminate_backend(${Number(regRow!.backend_pid)})`
      const releasedAfterDeath = yield* pollUntil(Effect.map(b.releaseDeadClaims!(regB), (n) => n > 0), 15)
      const after = Option.getOrThrow(yield* b.get({ workflow: "wf", executionId: "x1" }))
      expect({ releasedAfterDeath, owner: after.claimOwner }).toEqual({ releasedAfterDeath: true, owner: null })
    }).pipe(Effect.scoped), 60_000)

  it.live("an engine whose liveness session ended has stopped its activity body before another engine takes it", () =>
    Effect.gen(function*() {
      const shared = yield* sharedPostgres
      const journalA = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
      const ctxB = yield* Layer.build(shared.journal())
      const journalB = Context.get(ctxB, DurableExecutionJournal.DurableExecutionJournal)
      const sql = Context.get(ctxB, SqlClient.SqlClient)
      const log = new RunLog()
      const started = yield* Deferred.make<void>()
      const hold = yield* Deferred.make<void>()
      let running = 0
      let stops = 0
      const workflow = Workflow.make(Order, (order) =>
        recorded(log, "charge", order.amount, Schema.Number, {
          body: Effect.gen(function*() {
            running++
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(hold)
          }).pipe(Effect.ensuring(Effect.sync(() => {
            running--
            stops++
          })))
        }))
      const engineA = yield* WorkflowEngine.make(workflow, { identity: "A" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journalA)
      )
      yield* Effect.fork(engineA.execute(new Order({ orderId: "o1", amount: 1 })))
      yield* Deferred.await(started)
      const t = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
      const [reg] = yield* sql<{ backend_pid: string | number }>`SELECT backend_pid FROM ${sql(t.engines)} WHERE owner = 'A'`
      const backend = Number(reg?.backend_pid)
      expect(backend).toBeGreaterThan(0)
      // A's liveness session ends; A's process (this one) and its activity body live on
      yield* sql`SELECT pg_terminate_backend(${backend})`
      const me = yield* journalB.registerEngine!("B", ["Order"])
      // B looks around as its liveness loop does and tries to take the execution, until A's body stopped
      let takenWhileRunning = false
      const stopped = yield* pollUntil(
        Effect.gen(function*() {
          yield* journalB.releaseDeadClaims!(me)
          const now = Date.now()
          const claim = yield* Effect.either(journalB.claim({ workflow: "Order", executionId: "o1" }, "B", now, now + 30_000))
          if (claim._tag === "Right" && claim.right._tag === "Claimed" && stops === 0) takenWhileRunning = true
          return stops > 0 || takenWhileRunning
        }),
        15
      )
      yield* Deferred.succeed(hold, undefined)
      expect({ stopped, takenWhileRunning }).toEqual({ stopped: true, takenWhileRunning: false })
    }).pipe(Effect.scoped), 60_000)

  it.live("every engine of a process started concurrently on one client registers its liveness session", () =>
    Effect.gen(function*() {
      const shared = yield* sharedPostgres
      const ctx = yield* Layer.build(shared.journal())
      const journal = Context.get(ctx, DurableExecutionJournal.DurableExecutionJournal)
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) => recorded(log, "charge", order.amount, Schema.Number))
      yield* Effect.all(
        [0, 1, 2].map((i) => WorkflowEngine.make(workflow, { identity: `E${i}` })),
        { concurrency: "unbounded" }
      ).pipe(Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal))
      const t = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
      const rows = yield* sql<{ owner: string; backend_pid: number | null }>`SELECT owner, backend_pid FROM ${
        sql(t.engines)
      } ORDER BY owner`
      expect(rows.map((r) => r.owner)).toEqual(["E0", "E1", "E2"])
      expect(rows.filter((r) => r.backend_pid === null).map((r) => r.owner)).toEqual([])
    }).pipe(Effect.scoped), 30_000)
})
