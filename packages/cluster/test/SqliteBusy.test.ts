/**
 * Several processes on one SQLite file (a manager and its pods on one machine): a statement that meets
 * another process's write lock waits for it (up to the client's busy timeout) instead of failing at once,
 * and a wait that runs out fails with a typed error without wedging the client. Real processes, real file,
 * live clock.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as SqlClientUrl from "../src/node/internal/sqlClient.js"
import * as StorageSql from "../src/node/StorageSql.js"
import { type Child, cleanUpChildren, spawnChild } from "./process/harness.js"
import { tempFile } from "./utils/sql.js"

afterAll(cleanUpChildren)

const insert = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.withTransaction(sql`INSERT INTO busy_test (writer) VALUES ('parent')`))

/** The writers of the rows, in order. */
const writers = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ writer: string }>`SELECT writer FROM busy_test ORDER BY rowid`, (rows) =>
    rows.map((row) => row.writer)))

/** Has the other process take the file's write lock for `millis` (its clock); returns once it holds it. */
const lockFor = (holder: Child, millis: number) =>
  Effect.zipRight(holder.send(`lock ${millis}`), holder.waitFor(/^locked$/))

/**
 * One case: `body` runs with a client (`StorageSql.layerClient`, `busyTimeout`) on a new SQLite file, beside
 * another process on the same file that takes its write lock on demand (`lockFor`).
 */
const besideLockHolder = <A, E>(
  busyTimeout: Duration.Duration,
  body: (holder: Child) => Effect.Effect<A, E, SqlClient.SqlClient>
) =>
  Effect.gen(function*() {
    const file = yield* tempFile("cluster.db")
    const holder = yield* spawnChild("lock-holder", "test/process/sqliteLockHolder.ts", [file])
    yield* holder.waitFor(/^ready$/)
    return yield* body(holder).pipe(Effect.provide(StorageSql.layerClient(file, { busyTimeout })))
  }).pipe(Effect.scoped)

describe("StorageSql.layerClient on a SQLite file shared by processes", () => {
  it.live("a write waits for another process's write lock and then succeeds", () =>
    besideLockHolder(Duration.seconds(10), (holder) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* lockFor(holder, 400)
        const started = Date.now()
        // Both a plain statement and a transaction (its BEGIN IMMEDIATE) wait.
        yield* sql`INSERT INTO busy_test (writer) VALUES ('parent-plain')`
        expect(Date.now() - started).toBeGreaterThan(100)
        yield* holder.waitFor(/^released$/)
        yield* lockFor(holder, 300)
        yield* insert
        yield* holder.waitFor(/^released$/)
        // A plain statement after a transaction (on the driver's next connection) waits too.
        yield* lockFor(holder, 400)
        const startedAfter = Date.now()
        yield* sql`INSERT INTO busy_test (writer) VALUES ('parent-after')`
        expect(Date.now() - startedAfter).toBeGreaterThan(100)
        yield* holder.waitFor(/^released$/)
        expect(yield* writers).toEqual(["child", "parent-plain", "child", "parent", "child", "parent-after"])
      })), { timeout: 120_000 })

  it.live("a wait longer than the busy timeout fails (SQLITE_BUSY), and the client still works after", () =>
    besideLockHolder(Duration.millis(100), (holder) =>
      Effect.gen(function*() {
        yield* lockFor(holder, 1500)
        const failed = yield* Effect.flip(insert)
        expect(String((failed.cause as { code?: unknown } | undefined)?.code)).toMatch(/^SQLITE_BUSY/)
        yield* holder.waitFor(/^released$/)
        // A failed BEGIN left nothing behind: the next transaction runs (bounded, in case it would hang).
        yield* insert.pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("wedged") }))
        expect(yield* writers).toEqual(["child", "parent"])
      })), { timeout: 120_000 })
})

type RawClient = Parameters<typeof SqlClientUrl.withBusyTimeout>[0]

/** `raw`, recording the text of every statement sent to it outside a transaction. */
const recording = (raw: RawClient, sent: Array<string>): RawClient =>
  new Proxy(raw, {
    get(target, property) {
      const value = Reflect.get(target, property)
      if (property !== "execute") return typeof value === "function" ? value.bind(target) : value
      return (statement: Parameters<RawClient["execute"]>[0]) => {
        sent.push(typeof statement === "string" ? statement : statement.sql)
        return target.execute(statement)
      }
    }
  })

describe("the SQLite client's busy timeout", () => {
  it.scoped("is set once per driver connection: before its first statement, and again after a transaction", () =>
    Effect.gen(function*() {
      const file = yield* tempFile("once.db")
      const owner = yield* LibsqlClient.make({ url: `file:${file}` }).pipe(Effect.provide(Reactivity.layer))
      const sent: Array<string> = []
      const raw = recording((owner as unknown as { readonly sdk: RawClient }).sdk, sent)
      const sql = yield* LibsqlClient.make({ liveClient: SqlClientUrl.withBusyTimeout(raw, 250) }).pipe(
        Effect.provide(Reactivity.layer)
      )
      yield* sql`CREATE TABLE t (v INTEGER NOT NULL)`
      for (let i = 0; i < 4; i++) yield* sql`INSERT INTO t (v) VALUES (${i})`
      // the transaction takes the connection; the statements after it run on a new one
      yield* sql.withTransaction(sql`INSERT INTO t (v) VALUES (4)`)
      const [after] = yield* sql<{ timeout: number }>`PRAGMA busy_timeout`
      for (let i = 5; i < 8; i++) yield* sql`INSERT INTO t (v) VALUES (${i})`
      expect(after?.timeout).toBe(250)
      // 9 statements and a BEGIN on 2 connections: 2 PRAGMAs (one before each of the 10 before)
      expect(sent.filter((text) => text === "PRAGMA busy_timeout = 250")).toHaveLength(2)
      expect(sent).toHaveLength(9 + 2)
    }))
})
