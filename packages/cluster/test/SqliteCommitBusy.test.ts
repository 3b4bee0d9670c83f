/**
 * A SQLite write transaction of `StorageSql.layerClient` while another connection (another process) holds a
 * read transaction open longer than the busy timeout. In the default rollback journal a COMMIT needs every
 * reader gone: it failed busy, `@effect/sql` left the write transaction open, and the file stayed locked for
 * the client and every other connection. The client puts the file in WAL mode, where a COMMIT does not wait
 * for readers: the write commits, and so do the ones after it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import { Duration, Effect } from "effect"
import * as StorageSql from "../src/node/StorageSql.js"
import { tempFile } from "./utils/sql.js"

type Raw = {
  transaction: (mode: string) => Promise<{
    execute: (sql: string) => Promise<{ rows: ReadonlyArray<Record<string, unknown>> }>
    commit: () => Promise<void>
  }>
}

describe("SQLite: a write transaction beside another connection's open read", () => {
  it.live("commits without waiting for the reader (WAL), and the file stays open to both", () =>
    Effect.gen(function*() {
      const file = yield* tempFile("c.db")
      const other = yield* LibsqlClient.make({ url: `file:${file}` }).pipe(Effect.provide(Reactivity.layer))
      const raw = (other as unknown as { readonly sdk: Raw }).sdk
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (v TEXT NOT NULL)`
        yield* sql`INSERT INTO t (v) VALUES ('before')`
        // Another connection reads in a transaction: it holds the file's shared lock.
        const reader = yield* Effect.promise(() => raw.transaction("read"))
        yield* Effect.promise(() => reader.execute("SELECT * FROM t"))
        const first = yield* sql.withTransaction(sql`INSERT INTO t (v) VALUES ('busy')`).pipe(
          Effect.sandbox,
          Effect.either
        )
        yield* Effect.promise(() => reader.commit())
        // The client is not wedged: a later transaction commits.
        const second = yield* sql.withTransaction(sql`INSERT INTO t (v) VALUES ('after')`).pipe(
          Effect.timeout(Duration.seconds(5)),
          Effect.sandbox,
          Effect.either
        )
        // Another connection (process) can read the file again.
        const rows = yield* Effect.tryPromise(async () => {
          const tx = await raw.transaction("read")
          const result = await tx.execute("SELECT v FROM t ORDER BY rowid")
          await tx.commit()
          return result.rows as ReadonlyArray<{ v: string }>
        }).pipe(
          Effect.map((rows) => rows.map((r) => r.v)),
          Effect.orElseSucceed(() => "SQLITE_BUSY")
        )
        expect({ first: first._tag, second: second._tag, rows }).toEqual({
          first: "Right",
          second: "Right",
          rows: ["before", "busy", "after"]
        })
      }).pipe(Effect.provide(StorageSql.layerClient(file, { busyTimeout: Duration.millis(200) })))
    }).pipe(Effect.scoped), { timeout: 30_000 })
})
