/**
 * The SQL journal's versioned migrations.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { JournalError } from "../journal.js"
import { SqlClientTag } from "../sqlClient.js"
import { inTransaction, withRetries } from "./retry.js"
import { num } from "./rows.js"
import type { TableNames } from "./tables.js"
import { defaultPrefix, tableNames } from "./tables.js"

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
      Effect.gen(function*() {
        // Keys compare byte-wise on both databases (SQLite's BINARY; PostgreSQL's "C"), so ordering and
        // keyset paging agree with the in-memory journal whatever the database's default collation is.
        const key = sql.onDialectOrElse({ pg: () => ` COLLATE "C"`, orElse: () => "" })
        const fillfactor = sql.onDialectOrElse({ pg: () => " WITH (fillfactor = 85)", orElse: () => "" })
        yield* sql.unsafe(`CREATE TABLE ${q(sql, t.executions)} (
  workflow TEXT${key} NOT NULL,
  execution_id TEXT${key} NOT NULL,
  payload TEXT NOT NULL,
  payload_hash TEXT NOT NULL,
  version TEXT NOT NULL,
  parent TEXT,
  status TEXT NOT NULL,
  suspended_on TEXT,
  wake_at BIGINT,
  result TEXT,
  claim_owner TEXT,
  claim_epoch BIGINT NOT NULL,
  claim_until BIGINT,
  cancel_requested SMALLINT NOT NULL DEFAULT 0,
  inbox_version BIGINT NOT NULL DEFAULT 0,
  next_sequence BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  completed_at BIGINT,
  format_version INTEGER NOT NULL,
  PRIMARY KEY (workflow, execution_id)
)${fillfactor}`)
        yield* sql.unsafe(`CREATE TABLE ${q(sql, t.events)} (
  workflow TEXT${key} NOT NULL,
  execution_id TEXT${key} NOT NULL,
  sequence BIGINT NOT NULL,
  kind TEXT NOT NULL,
  step_kind TEXT NOT NULL,
  step_scope TEXT NOT NULL,
  step_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  body TEXT NOT NULL,
  format_version INTEGER NOT NULL,
  PRIMARY KEY (workflow, execution_id, sequence)
)`)
        yield* sql.unsafe(`CREATE TABLE ${q(sql, t.signals)} (
  workflow TEXT${key} NOT NULL,
  execution_id TEXT${key} NOT NULL,
  name TEXT${key} NOT NULL,
  value TEXT NOT NULL,
  inbox_version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (workflow, execution_id, name)
)`)
        // Due timers, in deadline order (nextWakeAt, dueTimers).
        yield* sql.unsafe(
          `CREATE INDEX ${q(sql, `${t.executions}_timers`)} ON ${q(sql, t.executions)} ` +
            `(wake_at, workflow, execution_id) WHERE status = 'suspended' AND wake_at IS NOT NULL`
        )
        // Unfinished executions that may need an engine (resumable), oldest first.
        yield* sql.unsafe(
          `CREATE INDEX ${q(sql, `${t.executions}_running`)} ON ${q(sql, t.executions)} ` +
            `(created_at, workflow, execution_id) WHERE status = 'running'`
        )
        // Status listing, paged by (workflow, execution_id).
        yield* sql.unsafe(
          `CREATE INDEX ${q(sql, `${t.executions}_status`)} ON ${q(sql, t.executions)} ` +
            `(status, workflow, execution_id)`
        )
        // Retention.
        yield* sql.unsafe(
          `CREATE INDEX ${q(sql, `${t.executions}_completed`)} ON ${q(sql, t.executions)} ` +
            `(completed_at) WHERE completed_at IS NOT NULL`
        )
      })
  },
  {
    version: 2,
    name: "create_engines",
    // Engines register here how other engines can tell that they died (docs/journal.md, "Engine
    // liveness"): PostgreSQL, the backend of a session the engine holds open; SQLite, its host, pid and
    // process start time. `workflows` is the JSON array of the workflows it runs.
    run: (sql, t) =>
      Effect.gen(function*() {
        const key = sql.onDialectOrElse({ pg: () => ` COLLATE "C"`, orElse: () => "" })
        yield* sql.unsafe(`CREATE TABLE ${q(sql, t.engines)} (
  instance TEXT${key} NOT NULL PRIMARY KEY,
  owner TEXT${key} NOT NULL,
  workflows TEXT NOT NULL,
  host TEXT,
  pid BIGINT,
  process_start TEXT,
  backend_pid BIGINT,
  backend_start TEXT,
  started_at BIGINT NOT NULL
)`)
        yield* sql.unsafe(`CREATE INDEX ${q(sql, `${t.engines}_owner`)} ON ${q(sql, t.engines)} (owner)`)
        // The inbox version a suspension saw: a suspended execution whose inbox moved on since (a signal
        // stored by a process that died before waking it) is found and resumed (issue 9 #2).
        yield* sql.unsafe(`ALTER TABLE ${q(sql, t.executions)} ADD COLUMN suspended_inbox BIGINT`)
        yield* sql.unsafe(
          `CREATE INDEX ${q(sql, `${t.executions}_stale`)} ON ${q(sql, t.executions)} ` +
            `(workflow, execution_id) WHERE status = 'suspended'`
        )
      })
  }
]

/** Quotes an identifier for the client's dialect. */
export const q = (sql: SqlClient.SqlClient, name: string): string =>
  sql.onDialectOrElse({
    mysql: () => "`" + name.replace(/`/g, "``") + "`",
    orElse: () => `"${name.replace(/"/g, `""`)}"`
  })

/**
 * Creates or upgrades the journal's tables for a prefix (idempotent; concurrent callers are serialised by
 * a transaction, on PostgreSQL with an advisory lock).
 *
 * @since 0.1.0
 * @category migrations
 */
export const migrate = (
  options?: { readonly prefix?: string | undefined }
): Effect.Effect<ReadonlyArray<number>, JournalError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClientTag).withoutTransforms()
    const tables = yield* tableNames(options?.prefix ?? defaultPrefix)
    const migrationsTable = q(sql, tables.migrations)
    const run = Effect.gen(function*() {
      yield* sql.onDialectOrElse({
        pg: () => sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-cluster-workflow:${tables.migrations}`}))`,
        orElse: () => Effect.void
      })
      yield* sql.unsafe(
        `CREATE TABLE IF NOT EXISTS ${migrationsTable} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, ` +
          `applied_at BIGINT NOT NULL)`
      )
      const rows = yield* sql.unsafe<{ version: unknown }>(`SELECT version FROM ${migrationsTable}`)
      const applied = new Set(rows.map((r) => num(r.version)))
      const done: Array<number> = []
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue
        yield* migration.run(sql, tables)
        yield* sql`INSERT INTO ${sql(tables.migrations)} (version, name, applied_at)
VALUES (${migration.version}, ${migration.name}, ${Date.now()})`
        done.push(migration.version)
      }
      return done
    })
    return yield* withRetries(10, "migrate", inTransaction(sql.withTransaction, run))
  })
