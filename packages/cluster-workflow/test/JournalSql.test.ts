/**
 * SQL-specific journal tests: migrations and prefixes, the 2024 entry point, fencing under a concurrent
 * claim on PostgreSQL, SQLite busy retries from two clients on one file, number decoding, opaque rows,
 * transactional activities, error mapping, and a differential test against the in-memory specification.
 */
import { describe, expect, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { join } from "node:path"
import type { ExecutionKey, Journal, JournalWrite } from "../src/DurableExecutionJournal.js"
import * as DurableExecutionJournal from "../src/DurableExecutionJournal.js"
import * as DurableExecutionJournalInMemory from "../src/DurableExecutionJournalInMemory.js"
import * as DurableExecutionJournalSql from "../src/DurableExecutionJournalSql.js"
import * as Sqlite from "../src/node/Sqlite.js"
import {
  append,
  databaseUrl,
  describeJournals,
  dropTables,
  event,
  fence,
  key,
  pgClientLayer,
  postgresSkipReason,
  sqlJournalCases,
  sqliteClientLayer,
  start,
  suspend,
  tempDir,
  uniquePrefix
} from "./utils/journals.js"

interface ClientCase {
  readonly name: "sqlite" | "postgres"
  readonly client: Layer.Layer<SqlClient.SqlClient>
}

const clientCases: ReadonlyArray<ClientCase & { readonly skip: string | undefined }> = [
  { name: "sqlite", client: Layer.orDie(sqliteClientLayer()), skip: undefined },
  { name: "postgres", client: Layer.orDie(pgClientLayer()), skip: postgresSkipReason }
]

/** Every test here runs on the TestClock: its journals follow it (the SQL journal's `clock: "test"`). */
const onTestClock = { clock: "test" } as const

/** A SQL journal with a fresh prefix on the client in context; its tables are dropped with the scope. */
const freshJournal = (options?: DurableExecutionJournalSql.SqlJournalOptions) =>
  Effect.gen(function*() {
    const prefix = options?.prefix ?? uniquePrefix()
    yield* Effect.addFinalizer(() => Effect.ignore(dropTables(prefix)))
    const journal = yield* DurableExecutionJournalSql.make({ ...onTestClock, ...options, prefix })
    return { journal, prefix }
  })

const tableExists = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql.onDialectOrElse({
      pg: () => sql`SELECT 1 FROM pg_tables WHERE tablename = ${name}`,
      orElse: () => sql`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ${name}`
    })
    return rows.length > 0
  })

for (const c of clientCases) {
  const describeCase = c.skip === undefined ? describe : describe.skip
  describeCase(`SQL journal [${c.name}]${c.skip === undefined ? "" : ` (skipped: ${c.skip})`}`, () => {
    const scoped = (name: string, body: Effect.Effect<void, unknown, SqlClient.SqlClient | Scope.Scope>) =>
      // The scope closes (dropping the test's tables) before the client is released.
      it.effect(name, () => Effect.provide(Effect.scoped(body), c.client))

    scoped(
      "migrations create versioned tables once; two prefixes in one database are independent",
      Effect.gen(function*() {
        const p1 = uniquePrefix("m1")
        const p2 = uniquePrefix("m2")
        yield* Effect.addFinalizer(() => Effect.ignore(Effect.zip(dropTables(p1), dropTables(p2))))
        expect(yield* DurableExecutionJournalSql.migrate({ prefix: p1 })).toEqual([1, 2])
        expect(yield* DurableExecutionJournalSql.migrate({ prefix: p1 })).toEqual([])
        for (const suffix of ["executions", "events", "signals", "engines", "migrations"]) {
          expect(yield* tableExists(`${p1}_${suffix}`)).toBe(true)
          expect(yield* tableExists(`${p2}_${suffix}`)).toBe(false)
        }
        const j1 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix: p1 })
        const j2 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix: p2 })
        yield* j1.commit([start(key("x"))])
        expect(Option.isSome(yield* j1.get(key("x")))).toBe(true)
        expect(yield* j2.get(key("x"))).toEqual(Option.none())
        expect(yield* j2.commit([start(key("x"), { owner: "other" })])).toEqual([{ _tag: "Created", epoch: 1 }])
        const sql = yield* SqlClient.SqlClient
        const versions = yield* sql`SELECT version, name FROM ${sql(`${p1}_migrations`)}`
        expect(versions.map((r) => [Number(r.version), r.name])).toEqual([[1, "create_tables"], [2, "create_engines"]])
      })
    )

    scoped(
      "concurrent migrations of one prefix serialise",
      Effect.gen(function*() {
        const prefix = uniquePrefix("mc")
        yield* Effect.addFinalizer(() => Effect.ignore(dropTables(prefix)))
        const applied = yield* Effect.all(
          Array.from({ length: 4 }, () => DurableExecutionJournalSql.migrate({ prefix })),
          { concurrency: "unbounded" }
        )
        expect(applied.flat()).toEqual([1, 2])
      })
    )

    scoped(
      "migrate: false does not create tables; operations then fail with a non-retryable JournalError",
      Effect.gen(function*() {
        const prefix = uniquePrefix("nm")
        const journal = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix, migrate: false })
        expect(yield* tableExists(`${prefix}_executions`)).toBe(false)
        const error = yield* Effect.flip(journal.get(key("x")))
        expect(error).toBeInstanceOf(DurableExecutionJournal.JournalError)
        expect(error).toMatchObject({ operation: "get", retryable: false })
        const commitError = yield* Effect.flip(journal.commit([start(key("x"))]))
        expect(commitError).toMatchObject({ operation: "commit", retryable: false })
      })
    )

    scoped(
      "an invalid prefix is refused",
      Effect.gen(function*() {
        for (const prefix of ["", "1abc", "a-b", "a b", "x\"; DROP TABLE y; --", "a".repeat(41)]) {
          const error = yield* Effect.flip(DurableExecutionJournalSql.make({ ...onTestClock, prefix }))
          expect(error).toMatchObject({ _tag: "JournalError", operation: "make", retryable: false })
        }
      })
    )

    scoped(
      "the 2024 entry point: DurableExecutionJournal.layer({ table }) needs only a SqlClient",
      Effect.gen(function*() {
        const table = uniquePrefix("legacy")
        yield* Effect.addFinalizer(() => Effect.ignore(dropTables(table)))
        const client = yield* SqlClient.SqlClient
        const journal = yield* Effect.provide(
          DurableExecutionJournal.DurableExecutionJournal,
          DurableExecutionJournal.layer({ table, ...onTestClock }).pipe(Layer.provide(Layer.succeed(SqlClient.SqlClient, client)))
        )
        expect(yield* journal.commit([start(key("legacy"))])).toEqual([{ _tag: "Created", epoch: 1 }])
        expect(yield* tableExists(`${table}_executions`)).toBe(true)
        const again = yield* DurableExecutionJournal.make({ table, ...onTestClock })
        expect(Option.isSome(yield* again.get(key("legacy")))).toBe(true)
        expect(journal.sql?.client).toBe(client)
      })
    )

    scoped(
      "numbers decode to JS numbers (PostgreSQL BIGINT comes back as text)",
      Effect.gen(function*() {
        const { journal } = yield* freshJournal()
        const big = 2 ** 53 - 1
        const k = key("n")
        yield* journal.commit([start(k, { claimUntil: big, now: 2 ** 41 })])
        yield* journal.commit([append(k, fence(), [event(2 ** 31 + 5, { attempt: 2 ** 31 - 1 })], {
          status: "completed",
          result: "r",
          completedAt: 2 ** 45
        })])
        const row = Option.getOrThrow(yield* journal.get(k))
        for (const field of ["claimEpoch", "inboxVersion", "createdAt", "updatedAt", "completedAt", "formatVersion"]) {
          expect(typeof row[field as keyof typeof row]).toBe("number")
        }
        expect(row).toMatchObject({ createdAt: 2 ** 41, completedAt: 2 ** 45, claimUntil: null })
        const [ev] = yield* journal.events(k, 0)
        expect(ev).toMatchObject({ sequence: 2 ** 31 + 5, attempt: 2 ** 31 - 1 })
        expect(typeof ev!.sequence).toBe("number")
        yield* journal.commit([start(key("w")), suspend(key("w"), fence(), 0, { wakeAt: big })])
        expect(yield* journal.nextWakeAt(["wf"])).toBe(big)
        expect(yield* journal.dueTimers(["wf"], big, 10)).toEqual([key("w")])
      })
    )

    scoped(
      "rows are opaque text: garbled payloads, results, bodies and an unknown status crash nothing",
      Effect.gen(function*() {
        const { journal, prefix } = yield* freshJournal()
        const sql = yield* SqlClient.SqlClient
        yield* journal.commit([start(key("good")), start(key("bad"))])
        yield* journal.commit([append(key("bad"), fence(), [event(0)])])
        yield* sql`UPDATE ${sql(`${prefix}_executions`)} SET payload = ${"{not json"}, result = ${"\u0001garbage"},
          status = ${"exploded"}, parent = ${"]["} WHERE execution_id = ${"bad"}`
        yield* sql`UPDATE ${sql(`${prefix}_events`)} SET body = ${"<xml/>"}, kind = ${"Unknown"}`
        const bad = Option.getOrThrow(yield* journal.get(key("bad")))
        expect(bad).toMatchObject({ payload: "{not json", result: "\u0001garbage", status: "exploded", parent: "][" })
        expect(yield* journal.events(key("bad"), 0)).toMatchObject([{ body: "<xml/>", kind: "Unknown" }])
        expect((yield* journal.list({ workflows: ["wf"], limit: 10 })).map((r) => r.status)).toEqual([
          "exploded",
          "running"
        ])
        expect(yield* journal.resumable(["wf"], "A", 0, 10)).toEqual([key("good")])
        expect((yield* journal.claim(key("good"), "A", 0, 10))._tag).toEqual("Claimed")
        expect(yield* journal.commit([append(key("good"), fence("A", 2), [event(0)])])).toEqual([{ _tag: "Ok" }])
      })
    )

    scoped(
      "sql.withTransaction: the user's writes and the journal's commit succeed or fail together",
      Effect.gen(function*() {
        const { journal } = yield* freshJournal()
        const sql = yield* SqlClient.SqlClient
        const side = uniquePrefix("side")
        yield* Effect.addFinalizer(() => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(side)}`))
        yield* sql`CREATE TABLE ${sql(side)} (id TEXT PRIMARY KEY)`
        const k = key("tx")
        yield* journal.commit([start(k)])
        const tx = journal.sql!
        expect(tx.client).toBe(sql)
        const result = yield* tx.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO ${sql(side)} (id) VALUES (${"one"})`
          return yield* journal.commit([append(k, fence(), [event(0)])])
        }))
        expect(result).toEqual([{ _tag: "Ok" }])
        class Boom {
          readonly _tag = "Boom"
        }
        const failed = yield* Effect.flip(tx.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO ${sql(side)} (id) VALUES (${"two"})`
          yield* journal.commit([append(k, fence(), [event(1)])])
          return yield* Effect.fail(new Boom())
        })))
        expect(failed).toBeInstanceOf(Boom)
        expect((yield* sql`SELECT id FROM ${sql(side)} ORDER BY id`).map((r) => r.id)).toEqual(["one"])
        expect((yield* journal.events(k, 0)).map((e) => e.sequence)).toEqual([0])
        // The user's own SqlError stays the user's error, not a JournalError.
        const userSqlError = yield* Effect.flip(tx.withTransaction(sql`SELECT * FROM ${sql(uniquePrefix("nope"))}`))
        expect(userSqlError._tag).toEqual("SqlError")
      })
    )

    scoped(
      "a client with name transforms does not disturb the journal",
      Effect.gen(function*() {
        const client = yield* SqlClient.SqlClient
        const dir = yield* tempDir
        const camel = (s: string) => s.replace(/_(\w)/g, (_, x: string) => x.toUpperCase())
        const snake = (s: string) => s.replace(/[A-Z]/g, (x) => `_${x.toLowerCase()}`)
        const transformed: Layer.Layer<SqlClient.SqlClient, unknown> = c.name === "sqlite"
          ? Sqlite.layerClient({ filename: join(dir, "t.db"), transformResultNames: camel, transformQueryNames: snake })
          : PgClient.layer({ url: Redacted.make(databaseUrl), transformResultNames: camel, transformQueryNames: snake })
        yield* Effect.scoped(Effect.gen(function*() {
          const { journal } = yield* freshJournal()
          yield* journal.commit([start(key("t"))])
          expect(Option.getOrThrow(yield* journal.get(key("t")))).toMatchObject({ executionId: "t" })
          expect(yield* journal.list({ workflows: ["wf"], limit: 5 })).toHaveLength(1)
          expect(journal.sql?.client).not.toBe(client)
        })).pipe(Effect.provide(Layer.orDie(transformed)))
      })
    )

    scoped(
      "deleteCompleted works in chunks",
      Effect.gen(function*() {
        const { journal } = yield* freshJournal()
        const ids = Array.from({ length: 1_234 }, (_, i) => key(`d${i}`))
        const writes: Array<JournalWrite> = []
        for (const k of ids) {
          writes.push(start(k))
          writes.push(append(k, fence(), [event(0)], { status: "completed", result: "r", completedAt: 10 }))
        }
        const results = yield* journal.commit(writes)
        expect(results.filter((r) => r._tag === "Ok" || r._tag === "Created")).toHaveLength(writes.length)
        yield* journal.commit([start(key("keep"))])
        expect(yield* journal.deleteCompleted(11)).toEqual(1_234)
        expect(yield* journal.list({ workflows: ["wf"], limit: 10 })).toHaveLength(1)
      })
    )

    scoped(
      "the same executions started concurrently by two clients are created exactly once",
      Effect.gen(function*() {
        const { journal: j1, prefix } = yield* freshJournal()
        const j2 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix })
        const keys = Array.from({ length: 40 }, (_, i) => key(`c${i}`))
        const batches = [j1, j2, j1, j2].map((j, n) =>
          j.commit((n % 2 === 0 ? keys : [...keys].reverse()).map((k) => start(k, { owner: `o${n}` })))
        )
        const results = yield* Effect.all(batches, { concurrency: "unbounded" })
        const created = results.flat().filter((r) => r._tag === "Created")
        expect(created).toHaveLength(keys.length)
        for (const k of keys) expect(Option.isSome(yield* j1.get(k))).toBe(true)
      })
    )

    scoped(
      "differential: random operations give the same results as the in-memory journal",
      Effect.gen(function*() {
        const runtime = yield* Effect.runtime<SqlClient.SqlClient>()
        yield* Effect.promise(() =>
          FastCheck.assert(
            FastCheck.asyncProperty(programArbitrary, (program) =>
              Runtime.runPromise(runtime)(
                Effect.scoped(Effect.gen(function*() {
                  const memory = yield* DurableExecutionJournalInMemory.make
                  const { journal } = yield* freshJournal()
                  yield* runDifferential(program, memory, journal)
                }))
              )),
            {
              // Fixed by default (deterministic); JOURNAL_SEED / JOURNAL_RUNS explore further.
              seed: Number(process.env.JOURNAL_SEED ?? 20261125),
              numRuns: Number(process.env.JOURNAL_RUNS ?? (c.name === "postgres" ? 25 : 40)),
              endOnFailure: true
            }
          )
        )
      })
    )
  })
}

// -----------------------------------------------------------------------------------------------------------
// PostgreSQL: fencing under a concurrent claim, from two connections
// -----------------------------------------------------------------------------------------------------------

const describePg = postgresSkipReason === undefined ? describe : describe.skip

/** Waits (without sleeping) until some backend of this database waits for a lock. */
const awaitLockWaiter = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  for (let i = 0; i < 20_000; i++) {
    const rows = yield* sql`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`
    if (Number(rows[0]!.n) > 0) return
    yield* Effect.yieldNow()
  }
  return yield* Effect.dieMessage("no backend ever waited for the lock")
})

describePg(`SQL journal fencing [postgres]${postgresSkipReason === undefined ? "" : ` (skipped: ${postgresSkipReason})`}`, () => {
  it.effect("an Append racing a claim that took the row waits for it, then is fenced and writes nothing", () =>
    Effect.gen(function*() {
      const { journal } = yield* freshJournal()
      const sql = yield* SqlClient.SqlClient
      const k = key("race")
      yield* journal.commit([start(k, { owner: "A", claimUntil: 1_000 })])
      const claimed = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // Engine B claims the (expired) execution in a transaction it keeps open.
      const b = yield* Effect.fork(journal.sql!.withTransaction(Effect.gen(function*() {
        const result = yield* journal.claim(k, "B", 2_000, 9_000)
        expect(result).toMatchObject({ _tag: "Claimed", row: { claimEpoch: 2 } })
        yield* Deferred.succeed(claimed, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(claimed)
      // Engine A, still believing it holds epoch 1, commits an append on another connection.
      const a = yield* Effect.fork(journal.commit([append(k, fence("A", 1), [event(0)], { status: "completed", result: "a", completedAt: 5 })]))
      yield* awaitLockWaiter
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(b)
      expect(yield* Fiber.join(a)).toEqual([{ _tag: "Fenced" }])
      expect(yield* journal.events(k, 0)).toEqual([])
      expect(Option.getOrThrow(yield* journal.get(k))).toMatchObject({ status: "running", claimOwner: "B", claimEpoch: 2 })
      expect(sql).toBeDefined()
    }).pipe(Effect.scoped, Effect.provide(Layer.orDie(pgClientLayer()))))

  it.effect("if the racing claim rolls back, the waiting Append goes through", () =>
    Effect.gen(function*() {
      const { journal } = yield* freshJournal()
      const k = key("race")
      yield* journal.commit([start(k, { owner: "A", claimUntil: 1_000 })])
      const claimed = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const b = yield* Effect.fork(Effect.exit(journal.sql!.withTransaction(Effect.gen(function*() {
        yield* journal.claim(k, "B", 2_000, 9_000)
        yield* Deferred.succeed(claimed, undefined)
        yield* Deferred.await(release)
        return yield* Effect.fail("abort" as const)
      }))))
      yield* Deferred.await(claimed)
      const a = yield* Effect.fork(journal.commit([append(k, fence("A", 1), [event(0)])]))
      yield* awaitLockWaiter
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(b)
      expect(yield* Fiber.join(a)).toEqual([{ _tag: "Ok" }])
      expect(yield* journal.events(k, 0)).toHaveLength(1)
    }).pipe(Effect.scoped, Effect.provide(Layer.orDie(pgClientLayer()))))

  it.effect("a claim meeting an open Append transaction does not wait for it (retryable: not claimed now) and then sees the committed state", () =>
    Effect.gen(function*() {
      const { journal } = yield* freshJournal()
      const k = key("race")
      yield* journal.commit([start(k, { owner: "A", claimUntil: 1_000 })])
      const appended = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // A's commit runs inside an outer transaction that stays open (the journal's commit is a savepoint).
      const a = yield* Effect.fork(journal.sql!.withTransaction(Effect.gen(function*() {
        expect(yield* journal.commit([append(k, fence("A", 1), [event(0)], { status: "completed", result: "a", completedAt: 5 })]))
          .toEqual([{ _tag: "Ok" }])
        yield* Deferred.succeed(appended, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(appended)
      // The row is locked by A's open transaction: B's claim does not wait for it (nothing claimed).
      expect(yield* Effect.flip(journal.claim(k, "B", 2_000, 9_000))).toMatchObject({
        _tag: "JournalError",
        operation: "claim",
        retryable: true
      })
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(a)
      // The execution completed under A's epoch: B's claim now finds it terminal.
      expect(yield* journal.claim(k, "B", 2_000, 9_000)).toMatchObject({ _tag: "Unavailable", row: { status: "completed" } })
    }).pipe(Effect.scoped, Effect.provide(Layer.orDie(pgClientLayer()))))

  it.effect("a connection lost at COMMIT is a retryable JournalError whose outcome is unknown", () =>
    Effect.gen(function*() {
      const { journal } = yield* freshJournal()
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(journal.sql!.withTransaction(
        Effect.ignore(sql`SELECT pg_terminate_backend(pg_backend_pid())`)
      ))
      expect(error).toMatchObject({ _tag: "JournalError", retryable: true })
      expect((error as DurableExecutionJournal.JournalError).message).toContain("outcome is unknown")
      // The pool recovers: the journal carries on.
      expect(yield* journal.commit([start(key("after"))])).toEqual([{ _tag: "Created", epoch: 1 }])
    }).pipe(Effect.scoped, Effect.provide(Layer.orDie(pgClientLayer()))))
})

describePg(`SQL journal connection loss [postgres]${postgresSkipReason === undefined ? "" : ` (skipped: ${postgresSkipReason})`}`, () => {
  it.effect("a connection lost during a commit statement is a retryable JournalError whose outcome is unknown", () =>
    Effect.gen(function*() {
      const { journal } = yield* freshJournal()
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(journal.sql!.withTransaction(Effect.gen(function*() {
        yield* Effect.ignore(sql`SELECT pg_terminate_backend(pg_backend_pid())`)
        return yield* journal.commit([start(key("lost"))])
      })))
      expect(error).toMatchObject({ _tag: "JournalError", operation: "commit", retryable: true })
      expect((error as DurableExecutionJournal.JournalError).message).toContain("outcome is unknown")
      expect(yield* journal.get(key("lost"))).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(Layer.orDie(pgClientLayer()))))
})

// -----------------------------------------------------------------------------------------------------------
// SQLite: two clients on one file
// -----------------------------------------------------------------------------------------------------------

describe("SQL journal [sqlite, two clients on one file]", () => {
  const twoClients = Effect.gen(function*() {
    const dir = yield* tempDir
    const filename = join(dir, "shared.db")
    const first = yield* Layer.build(Layer.orDie(Sqlite.layerClient({ filename })))
    const second = yield* Layer.build(Layer.orDie(Sqlite.layerClient({ filename, busyTimeout: 0 })))
    return { first, second }
  })

  it.scoped("SQLITE_BUSY is retried with backoff on the live clock until the other writer is done", () =>
    Effect.gen(function*() {
      const { first, second } = yield* twoClients
      const prefix = uniquePrefix("busy")
      const j1 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix }).pipe(Effect.provide(first))
      const j2 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix, busyRetries: 1_000 }).pipe(Effect.provide(second))
      const sql1 = j1.sql!.client as SqlClient.SqlClient
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const retried = yield* Deferred.make<void>()
      // Client 1 holds the write lock.
      const holder = yield* Effect.fork(sql1.withTransaction(Effect.gen(function*() {
        yield* j1.commit([start(key("held"))])
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      // Client 2 commits: busy, retried; a retry is observed through the journal's debug log.
      const logger = Logger.make(({ message }) => {
        if (String(message).includes("busy")) Deferred.unsafeDone(retried, Effect.void)
      })
      const writer = yield* Effect.fork(
        j2.commit([start(key("waiting"))]).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
          Logger.withMinimumLogLevel(LogLevel.Debug)
        )
      )
      yield* Deferred.await(retried)
      // The backoff runs on the live clock: the test clock does not need to move.
      yield* TestClock.adjust(0)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      expect(yield* Fiber.join(writer)).toEqual([{ _tag: "Created", epoch: 1 }])
      expect(Option.isSome(yield* j1.get(key("waiting")))).toBe(true)
      expect(Option.isSome(yield* j2.get(key("held")))).toBe(true)
    }))

  it.scoped("after the retries a busy database surfaces as a retryable JournalError, and nothing is half-written", () =>
    Effect.gen(function*() {
      const { first, second } = yield* twoClients
      const prefix = uniquePrefix("busy")
      const j1 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix }).pipe(Effect.provide(first))
      const j2 = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix, busyRetries: 2 }).pipe(Effect.provide(second))
      const sql1 = j1.sql!.client as SqlClient.SqlClient
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(sql1.withTransaction(Effect.gen(function*() {
        yield* j1.commit([start(key("held"))])
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(holding)
      const error = yield* Effect.flip(j2.commit([start(key("a")), start(key("b"))]))
      expect(error).toMatchObject({ _tag: "JournalError", operation: "commit", retryable: true })
      expect(error.message).toMatch(/SQLITE_BUSY|locked/)
      const claimError = yield* Effect.flip(j2.claim(key("held"), "B", 0, 1))
      expect(claimError).toMatchObject({ retryable: true })
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      expect(yield* j2.get(key("a"))).toEqual(Option.none())
      expect(yield* j2.commit([start(key("a"))])).toEqual([{ _tag: "Created", epoch: 1 }])
    }))

  it.scoped("a client closed with a write transaction open (its fiber stopped, as in a crash) releases the lock at once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "closed.db")
      const firstScope = yield* Scope.make()
      const first = Context.get(
        yield* Layer.buildWithScope(Layer.orDie(Sqlite.layerClient({ filename })), firstScope),
        SqlClient.SqlClient
      )
      const second = Context.get(
        yield* Layer.build(Layer.orDie(Sqlite.layerClient({ filename, busyTimeout: 0 }))),
        SqlClient.SqlClient
      )
      yield* first`CREATE TABLE t (v TEXT)`
      const holding = yield* Deferred.make<void>()
      // The transaction's fiber stops inside it: it neither commits nor rolls back.
      yield* Effect.fork(first.withTransaction(Effect.gen(function*() {
        yield* first`INSERT INTO t (v) VALUES (${"uncommitted"})`
        yield* Deferred.succeed(holding, undefined)
        return yield* Effect.never
      })))
      yield* Deferred.await(holding)
      yield* Scope.close(firstScope, Exit.void)
      // No busy wait: another connection writes at once, and the open transaction's write is gone.
      yield* second`INSERT INTO t (v) VALUES (${"after"})`
      expect(yield* second`SELECT v FROM t`).toEqual([{ v: "after" }])
    }))

  it.scoped("a stock LibsqlClient with intMode: bigint still decodes numbers", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const client = yield* Layer.build(Layer.orDie(LibsqlClient.layer({
        url: `file:${join(dir, "bigint.db")}`,
        intMode: "bigint"
      })))
      const journal = yield* DurableExecutionJournalSql.make({ ...onTestClock, prefix: "bigints" }).pipe(Effect.provide(client))
      yield* journal.commit([start(key("n"), { claimUntil: 2 ** 50, now: 7 })])
      const row = Option.getOrThrow(yield* journal.get(key("n")))
      expect(row).toMatchObject({ claimUntil: 2 ** 50, claimEpoch: 1, createdAt: 7, cancelRequested: false })
      expect(typeof row.claimEpoch).toBe("number")
    }))
})

describeJournals("shared database", (c) => {
  it.scoped("two journals (engines) on one database see each other's executions and are fenced by each other", () =>
    Effect.gen(function*() {
      const db = yield* c.shared!
      const a = yield* Effect.map(Layer.build(db.journal()), (ctx) => Context.get(ctx, DurableExecutionJournal.DurableExecutionJournal))
      const b = yield* Effect.map(Layer.build(db.journal()), (ctx) => Context.get(ctx, DurableExecutionJournal.DurableExecutionJournal))
      expect(yield* a.commit([start(key("x"), { owner: "A", claimUntil: 100 })])).toEqual([{ _tag: "Created", epoch: 1 }])
      expect(yield* b.commit([start(key("x"), { owner: "B" })])).toMatchObject([{ _tag: "Exists", row: { claimOwner: "A" } }])
      expect(yield* b.claim(key("x"), "B", 101, 200)).toMatchObject({ _tag: "Claimed", row: { claimEpoch: 2 } })
      expect(yield* a.commit([append(key("x"), fence("A", 1), [event(0)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* b.commit([append(key("x"), fence("B", 2), [event(0)])])).toEqual([{ _tag: "Ok" }])
      expect(yield* a.events(key("x"), 0)).toHaveLength(1)
    }))
}, sqlJournalCases)

describe("sqlite subpath client", () => {
  it.scoped("in memory; more distinct statements than its statement cache; rows, values, blobs, big integers", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(Layer.orDie(Sqlite.layerClient({ filename: ":memory:" })))
      const sql = Context.get(context, SqlClient.SqlClient)
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB, n INTEGER)`
      for (let i = 0; i < 300; i++) yield* sql.unsafe(`INSERT INTO t (id, v) VALUES (${i}, 'x${i}')`)
      for (let i = 0; i < 300; i++) yield* sql.unsafe(`UPDATE t SET n = ${i * 2} WHERE id = ${i}`)
      expect(yield* sql`SELECT count(*) AS c, sum(n) AS s FROM t`).toEqual([{ c: 300, s: 299 * 300 }])
      expect(yield* sql`SELECT id, v FROM t WHERE id < 2 ORDER BY id`.values).toEqual([[0, "x0"], [1, "x1"]])
      yield* sql`UPDATE t SET b = ${new Uint8Array([1, 2, 3])}, n = ${2 ** 53 - 1} WHERE id = 0`
      const [row] = yield* sql<{ b: ArrayBuffer; n: number }>`SELECT b, n FROM t WHERE id = 0`
      expect(Array.from(new Uint8Array(row!.b))).toEqual([1, 2, 3])
      expect(row!.n).toBe(2 ** 53 - 1)
      yield* sql`UPDATE t SET n = 9223372036854775807 WHERE id = 1`
      const tooBig = yield* Effect.flip(sql`SELECT n FROM t WHERE id = 1`)
      expect(tooBig._tag).toEqual("SqlError")
      const failed = yield* Effect.flip(sql.withTransaction(Effect.zipRight(
        sql`INSERT INTO t (id, v) VALUES (${1000}, ${"rolled back"})`,
        sql`INSERT INTO t (id, v) VALUES (${0}, ${"duplicate"})`
      )))
      expect(failed._tag).toEqual("SqlError")
      expect(yield* sql`SELECT id FROM t WHERE id = 1000`).toEqual([])
      const journal = yield* DurableExecutionJournalSql.make(onTestClock).pipe(Effect.provide(context))
      expect(yield* journal.commit([start(key("m")), append(key("m"), fence(), [event(0)])])).toEqual([
        { _tag: "Created", epoch: 1 },
        { _tag: "Ok" }
      ])
    }))
})

// -----------------------------------------------------------------------------------------------------------
// The differential program
// -----------------------------------------------------------------------------------------------------------

type Op =
  | { readonly _tag: "commit"; readonly writes: ReadonlyArray<WriteSpec> }
  | { readonly _tag: "claim"; readonly k: number; readonly owner: string; readonly ttl: number }
  | { readonly _tag: "renew"; readonly owner: string; readonly claims: ReadonlyArray<[number, number]> }
  | { readonly _tag: "signal"; readonly k: number; readonly name: string; readonly value: string }
  | { readonly _tag: "requestCancel"; readonly k: number }
  | { readonly _tag: "resume"; readonly k: number }
  | { readonly _tag: "read"; readonly k: number; readonly from: number }
  | { readonly _tag: "timers"; readonly limit: number; readonly ahead: number }
  | { readonly _tag: "resumable"; readonly owner: string; readonly limit: number }
  | { readonly _tag: "list"; readonly status: string | undefined; readonly after: number | undefined; readonly limit: number }
  | { readonly _tag: "delete"; readonly back: number }

type WriteSpec =
  | { readonly _tag: "Start"; readonly k: number; readonly owner: string; readonly ttl: number }
  | {
    readonly _tag: "Append"
    readonly k: number
    readonly owner: string
    readonly epoch: number
    readonly seqs: ReadonlyArray<number>
    readonly update: number
  }
  | {
    readonly _tag: "Suspend"
    readonly k: number
    readonly owner: string
    readonly epoch: number
    readonly inbox: number
    readonly wake: number | null
  }
  | {
    // A Start and an Append its own claim allows (the engine's first commit of an execution).
    readonly _tag: "StartAppend"
    readonly k: number
    readonly owner: string
    readonly ttl: number
    readonly seqs: ReadonlyArray<number>
    readonly update: number
  }

const keys: ReadonlyArray<ExecutionKey> = [key("k0"), key("k1"), key("k2", "w2"), key("k3", "w2"), key("k4")]
const owners = FastCheck.constantFrom("A", "B")
const keyIndex = FastCheck.integer({ min: 0, max: keys.length - 1 })

const writeArbitrary: FastCheck.Arbitrary<WriteSpec> = FastCheck.oneof(
  FastCheck.record({
    _tag: FastCheck.constant("Start" as const),
    k: keyIndex,
    owner: owners,
    ttl: FastCheck.integer({ min: 0, max: 50 })
  }),
  {
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("Append" as const),
      k: keyIndex,
      owner: owners,
      epoch: FastCheck.integer({ min: 1, max: 4 }),
      seqs: FastCheck.array(FastCheck.integer({ min: -1, max: 8 }), { maxLength: 3 }),
      update: FastCheck.integer({ min: 0, max: 6 })
    }),
    weight: 3
  },
  {
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("StartAppend" as const),
      k: keyIndex,
      owner: owners,
      ttl: FastCheck.integer({ min: 0, max: 50 }),
      seqs: FastCheck.array(FastCheck.integer({ min: -1, max: 3 }), { maxLength: 2 }),
      update: FastCheck.integer({ min: 0, max: 6 })
    }),
    weight: 2
  },
  FastCheck.record({
    _tag: FastCheck.constant("Suspend" as const),
    k: keyIndex,
    owner: owners,
    epoch: FastCheck.integer({ min: 1, max: 4 }),
    inbox: FastCheck.integer({ min: 0, max: 3 }),
    wake: FastCheck.option(FastCheck.integer({ min: 0, max: 300 }), { nil: null })
  })
)

const opArbitrary: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  { arbitrary: FastCheck.record({ _tag: FastCheck.constant("commit" as const), writes: FastCheck.array(writeArbitrary, { minLength: 1, maxLength: 6 }) }), weight: 6 },
  { arbitrary: FastCheck.record({ _tag: FastCheck.constant("claim" as const), k: keyIndex, owner: owners, ttl: FastCheck.integer({ min: 0, max: 50 }) }), weight: 2 },
  FastCheck.record({
    _tag: FastCheck.constant("renew" as const),
    owner: owners,
    claims: FastCheck.array(FastCheck.tuple(keyIndex, FastCheck.integer({ min: 1, max: 4 })), { maxLength: 3 })
  }),
  FastCheck.record({ _tag: FastCheck.constant("signal" as const), k: keyIndex, name: FastCheck.constantFrom("a", "b"), value: FastCheck.string({ maxLength: 4 }) }),
  FastCheck.record({ _tag: FastCheck.constant("requestCancel" as const), k: keyIndex }),
  FastCheck.record({ _tag: FastCheck.constant("resume" as const), k: keyIndex }),
  FastCheck.record({ _tag: FastCheck.constant("read" as const), k: keyIndex, from: FastCheck.integer({ min: -1, max: 5 }) }),
  FastCheck.record({ _tag: FastCheck.constant("timers" as const), limit: FastCheck.integer({ min: 0, max: 4 }), ahead: FastCheck.integer({ min: 0, max: 300 }) }),
  FastCheck.record({ _tag: FastCheck.constant("resumable" as const), owner: owners, limit: FastCheck.integer({ min: 0, max: 6 }) }),
  FastCheck.record({
    _tag: FastCheck.constant("list" as const),
    status: FastCheck.constantFrom(undefined, "running", "suspended", "completed"),
    after: FastCheck.option(keyIndex, { nil: undefined }),
    limit: FastCheck.integer({ min: 0, max: 6 })
  }),
  FastCheck.record({ _tag: FastCheck.constant("delete" as const), back: FastCheck.integer({ min: 0, max: 100 }) })
)

const programArbitrary = FastCheck.array(
  FastCheck.tuple(opArbitrary, FastCheck.integer({ min: 0, max: 20 })),
  { minLength: 5, maxLength: 40 }
)

const updates = [
  undefined,
  { status: "completed" as const, result: "ok", completedAt: 0 },
  { status: "failed" as const, result: "no" },
  { cancelHandled: true },
  { result: "partial" },
  { status: "cancelled" as const, result: "c", completedAt: 0, cancelHandled: true },
  { status: "running" as const }
]

const toWrites = (spec: WriteSpec, now: number): Array<JournalWrite> => {
  const k = keys[spec.k]!
  const updateOf = (n: number) => {
    const update = updates[n]
    return update === undefined ? undefined : "completedAt" in update ? { ...update, completedAt: now } : update
  }
  switch (spec._tag) {
    case "Start":
      return [start(k, { owner: spec.owner, claimUntil: now + spec.ttl, now })]
    case "Append":
      return [append(k, fence(spec.owner, spec.epoch), spec.seqs.map((s) => event(s)), updateOf(spec.update), now)]
    case "StartAppend":
      return [
        start(k, { owner: spec.owner, claimUntil: now + spec.ttl, now }),
        append(k, fence(spec.owner, 1), spec.seqs.map((s) => event(s)), updateOf(spec.update), now + 1)
      ]
    case "Suspend":
      return [
        suspend(k, fence(spec.owner, spec.epoch), spec.inbox, {
          suspendedOn: spec.wake === null ? "signal" : "timer",
          wakeAt: spec.wake === null ? null : now + spec.wake,
          now
        })
      ]
  }
}

const runOp = (j: Journal, op: Op, now: number): Effect.Effect<unknown, unknown> => {
  const workflows = ["wf", "w2"]
  switch (op._tag) {
    case "commit":
      return j.commit(op.writes.flatMap((w) => toWrites(w, now)))
    case "claim":
      return j.claim(keys[op.k]!, op.owner, now, now + op.ttl)
    case "renew":
      return j.renew(op.owner, op.claims.map(([k, epoch]) => ({ key: keys[k]!, epoch })), now + 30)
    case "signal":
      return j.signal(keys[op.k]!, op.name, op.value, now)
    case "requestCancel":
      return j.requestCancel(keys[op.k]!, now)
    case "resume":
      return j.resume(keys[op.k]!, now)
    case "read":
      return Effect.all([j.get(keys[op.k]!), j.events(keys[op.k]!, op.from), j.signals(keys[op.k]!)])
    case "timers":
      return Effect.all([j.nextWakeAt(workflows), j.dueTimers(workflows, now + op.ahead, op.limit)])
    case "resumable":
      return j.resumable(workflows, op.owner, now, op.limit)
    case "list":
      return j.list({
        workflows,
        status: op.status as "running" | undefined,
        after: op.after === undefined ? undefined : keys[op.after],
        limit: op.limit
      })
    case "delete":
      return j.deleteCompleted(now - op.back)
  }
}

const snapshot = (j: Journal) =>
  Effect.forEach(keys, (k) => Effect.all([j.get(k), j.events(k, 0), j.signals(k)]))

const runDifferential = (
  program: ReadonlyArray<readonly [Op, number]>,
  memory: Journal,
  sql: Journal
) =>
  Effect.gen(function*() {
    let now = 1_000
    for (const [i, [op, delta]] of program.entries()) {
      now += delta
      const expected = yield* runOp(memory, op, now)
      const actual = yield* runOp(sql, op, now)
      expect({ step: i, op, result: actual }).toEqual({ step: i, op, result: expected })
    }
    expect(yield* snapshot(sql)).toEqual(yield* snapshot(memory))
  })
