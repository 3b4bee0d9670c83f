/**
 * Several processes on one SQLite file (a manager and its pods on one machine): a statement that meets
 * another process's write lock waits for it (up to the client's busy timeout) instead of failing at once,
 * and a wait that runs out fails with a typed error without wedging the client. Real processes, real file,
 * live clock.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as StorageSql from "../src/node/StorageSql.js"
import { cleanUpChildren, spawnChild } from "./process/harness.js"

afterAll(cleanUpChildren)

const withFile = <A, E, R>(body: (file: string) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "cluster-busy-"))),
    (dir) => body(join(dir, "cluster.db")),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const insert = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.withTransaction(sql`INSERT INTO busy_test (writer) VALUES ('parent')`))

describe("StorageSql.layerClient on a SQLite file shared by processes", () => {
  it.live("a write waits for another process's write lock and then succeeds", () =>
    withFile((file) =>
      Effect.gen(function*() {
        const holder = yield* spawnChild("lock-holder", "test/process/sqliteLockHolder.ts", [file])
        yield* holder.waitFor(/^ready$/)
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* holder.send("lock 400")
          yield* holder.waitFor(/^locked$/)
          const started = Date.now()
          // Both a plain statement and a transaction (its BEGIN IMMEDIATE) wait.
          yield* sql`INSERT INTO busy_test (writer) VALUES ('parent-plain')`
          expect(Date.now() - started).toBeGreaterThan(100)
          yield* holder.waitFor(/^released$/)
          yield* holder.send("lock 300")
          yield* holder.waitFor(/^locked$/)
          yield* insert
          yield* holder.waitFor(/^released$/)
          const rows = yield* sql<{ writer: string }>`SELECT writer FROM busy_test ORDER BY rowid`
          expect(rows.map((row) => row.writer)).toEqual(["child", "parent-plain", "child", "parent"])
        }).pipe(Effect.provide(StorageSql.layerClient(file, { busyTimeout: Duration.seconds(10) })))
      })
    ).pipe(Effect.scoped), { timeout: 120_000 })

  it.live("a wait longer than the busy timeout fails (SQLITE_BUSY), and the client still works after", () =>
    withFile((file) =>
      Effect.gen(function*() {
        const holder = yield* spawnChild("lock-holder", "test/process/sqliteLockHolder.ts", [file])
        yield* holder.waitFor(/^ready$/)
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* holder.send("lock 1500")
          yield* holder.waitFor(/^locked$/)
          const failed = yield* Effect.flip(insert)
          expect(String((failed.cause as { code?: unknown } | undefined)?.code)).toMatch(/^SQLITE_BUSY/)
          yield* holder.waitFor(/^released$/)
          // A failed BEGIN left nothing behind: the next transaction runs (bounded, in case it would hang).
          yield* insert.pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("wedged") }))
          const rows = yield* sql<{ writer: string }>`SELECT writer FROM busy_test ORDER BY rowid`
          expect(rows.map((row) => row.writer)).toEqual(["child", "parent"])
        }).pipe(Effect.provide(StorageSql.layerClient(file, { busyTimeout: Duration.millis(100) })))
      })
    ).pipe(Effect.scoped), { timeout: 120_000 })
})
