/**
 * The SQL storage's tables and their versioned migrations.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { StorageException } from "../../Storage.js"
import { num, toStorageException } from "./rows.js"

export interface TableNames {
  readonly pods: string
  readonly shards: string
  readonly managerLease: string
  readonly migrations: string
}

export const tablesOf = (prefix: string): TableNames => ({
  pods: `${prefix}_pods`,
  shards: `${prefix}_shards`,
  managerLease: `${prefix}_manager_lease`,
  migrations: `${prefix}_migrations`
})

interface Migration {
  readonly version: number
  readonly name: string
  readonly run: (sql: SqlClient.SqlClient, tables: TableNames) => Effect.Effect<void, SqlError>
}

const migrations: ReadonlyArray<Migration> = [
  {
    version: 1,
    name: "create_tables",
    run: (sql, t) =>
      Effect.all([
        // One row per registered pod; `incarnation` changes with every process start (registerPod).
        sql`CREATE TABLE ${sql(t.pods)} (
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  version TEXT NOT NULL,
  incarnation TEXT NOT NULL,
  lease_renewals BIGINT NOT NULL,
  PRIMARY KEY (host, port)
)`,
        // One row per shard ever assigned or given an epoch; the owner (NULL: none) with the incarnation
        // it had when it got the shard, and the epoch, which only grows.
        sql`CREATE TABLE ${sql(t.shards)} (
  shard_id INTEGER PRIMARY KEY,
  pod_host TEXT,
  pod_port INTEGER,
  incarnation TEXT,
  epoch BIGINT NOT NULL
)`,
        sql`CREATE INDEX ${sql(`${t.shards}_pod`)} ON ${sql(t.shards)} (pod_host, pod_port, incarnation)`,
        // At most one row (name 'manager'): the active manager and its fencing term.
        sql`CREATE TABLE ${sql(t.managerLease)} (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  term BIGINT NOT NULL,
  renewals BIGINT NOT NULL
)`
      ], { discard: true })
  },
  {
    version: 2,
    name: "shard_leases",
    // When the owner's lease on the shard ends, in ms since the epoch on the database's clock (NULL: no
    // lease, or released). The owner renews it; the manager gives the shard to another pod only once it is
    // over (plus a margin).
    run: (sql, t) => Effect.asVoid(sql`ALTER TABLE ${sql(t.shards)} ADD COLUMN lease_expires_at BIGINT`)
  }
]

/** Applies the missing migrations in one transaction (on PostgreSQL under an advisory lock per prefix). */
export const run = (
  sql: SqlClient.SqlClient,
  tables: TableNames
): Effect.Effect<ReadonlyArray<number>, StorageException> =>
  Effect.gen(function*() {
    yield* sql.onDialectOrElse({
      pg: () => sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-cluster:${tables.migrations}`}))`,
      orElse: () => Effect.void
    })
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(tables.migrations)} (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`
    const rows = yield* sql<{ version: unknown }>`SELECT version FROM ${sql(tables.migrations)}`
    const applied = new Set(rows.map((row) => num(row.version)))
    const done: Array<number> = []
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue
      yield* migration.run(sql, tables)
      const now = yield* Clock.currentTimeMillis
      yield* sql`INSERT INTO ${sql(tables.migrations)} (version, name, applied_at)
VALUES (${migration.version}, ${migration.name}, ${now})`
      done.push(migration.version)
    }
    return done
  }).pipe(
    sql.withTransaction,
    Effect.mapError((error) => toStorageException("migrating the storage tables", error)),
    Effect.catchAllDefect((defect) => Effect.fail(toStorageException("migrating the storage tables (commit)", defect)))
  )
