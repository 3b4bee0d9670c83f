/**
 * The storages every storage contract test runs against: in memory, a SQLite file in a temporary directory,
 * and PostgreSQL (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test) under a table prefix no
 * other run uses, whose tables are dropped when the test's scope closes. PostgreSQL cases are skipped, with
 * a line saying so, only when the server is unreachable and `REQUIRE_POSTGRES` is unset.
 */
import { Storage } from "@effect-cluster/cluster"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, Redacted, type Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const requirePostgres = process.env.REQUIRE_POSTGRES !== undefined && process.env.REQUIRE_POSTGRES !== ""

let counter = 0
/** A table prefix no other test (file, process or run) uses. */
export const uniquePrefix = (): string =>
  `cst_${process.pid.toString(36)}_${Date.now().toString(36)}_${(counter++).toString(36)}_${
    Math.floor(Math.random() * 36 ** 4).toString(36)
  }`

// The client's connect timeout runs on the Effect clock: keep it out of TestClock's way.
export const pgClient = (applicationName?: string) =>
  PgClient.layer({
    url: Redacted.make(databaseUrl),
    connectTimeout: "20 days",
    ...(applicationName !== undefined ? { applicationName } : {})
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "cluster-storage-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const dropTables = (prefix: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.forEach(
      ["pods", "shards", "manager_lease", "migrations"],
      (table) => sql`DROP TABLE IF EXISTS ${sql(`${prefix}_${table}`)}`,
      { discard: true }
    ))

/** A database several storages (processes) can open at once. */
export interface Database {
  /** A new storage on its own client (connection / pool), closed with the scope. */
  readonly open: Effect.Effect<Storage.LeasedStorage, never, Scope.Scope>
}

export interface StorageCase {
  readonly name: "memory" | "sqlite" | "postgres"
  /** A fresh, empty database, removed when the scope closes. */
  readonly database: Effect.Effect<Database, never, Scope.Scope>
  readonly skip: string | undefined
}

const sqlite: Effect.Effect<Database, never, Scope.Scope> = Effect.map(tempDir, (dir) => ({
  open: Effect.orDie(
    Effect.flatMap(
      Layer.build(LibsqlClient.layer({ url: `file:${join(dir, "cluster.db")}` })),
      (context) => Effect.provide(StorageSql.make({ prefix: "cluster" }), context)
    )
  )
}))

const postgres: Effect.Effect<Database, never, Scope.Scope> = Effect.gen(function*() {
  const prefix = uniquePrefix()
  yield* Effect.addFinalizer(() => Effect.ignore(Effect.provide(dropTables(prefix), pgClient())))
  return {
    open: Effect.orDie(
      Effect.flatMap(Layer.build(pgClient()), (context) => Effect.provide(StorageSql.make({ prefix }), context))
    )
  }
})

const memory: Effect.Effect<Database, never, Scope.Scope> = Effect.map(Storage.makeMemory, (storage) => ({
  open: Effect.succeed(storage)
}))

const postgresSkipReason: string | undefined = await Effect.runPromise(
  Layer.build(pgClient()).pipe(
    Effect.flatMap((context) => Effect.provide(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`), context)),
    Effect.scoped,
    Effect.timeout("4 seconds"),
    Effect.match({ onFailure: (error) => String(error), onSuccess: () => undefined })
  )
).then((failure) => {
  if (failure === undefined) return undefined
  if (requirePostgres) throw new Error(`REQUIRE_POSTGRES is set but PostgreSQL at ${databaseUrl} is unreachable: ${failure}`)
  console.warn(`[storages] skipping the PostgreSQL cases: PostgreSQL at ${databaseUrl} is unreachable (${failure})`)
  return failure
})

export const storageCases: ReadonlyArray<StorageCase> = [
  { name: "memory", database: memory, skip: undefined },
  { name: "sqlite", database: sqlite, skip: undefined },
  { name: "postgres", database: postgres, skip: postgresSkipReason }
]

/** A fresh storage of a case (its database removed with the scope). */
export const freshStorage = (storageCase: StorageCase) =>
  Effect.flatMap(storageCase.database, (database) => database.open)

