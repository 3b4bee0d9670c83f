/**
 * Several processes on one SQLite file (a manager and its pods on one machine): a statement that meets
 * another process's write lock waits for it (up to the client's busy timeout) instead of failing at once,
 * and a wait that runs out fails with a typed error without wedging the client. Real processes, real file,
 * live clock.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect } from "effect"
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
        expect(yield* writers).toEqual(["child", "parent-plain", "child", "parent"])
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
