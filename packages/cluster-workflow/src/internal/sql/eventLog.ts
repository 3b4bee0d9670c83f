/**
 * The 2024 event log in SQL: the table the 2024 `DurableExecutionJournal.layer({ table })` created, under
 * exactly that name and with its columns (`execution_id`, `sequence`, `event_json`, primary key
 * `(execution_id, sequence)` named `<table>_pkey`), so an existing 2024 journal is read as it is.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { JournalError } from "../journal.js"
import type { EventLogStore } from "../eventLog.js"
import { makeChanges } from "../eventLog.js"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import type { Dialect, SqlContext } from "./context.js"
import { dialectOf } from "./context.js"
import { withRetries } from "./retry.js"

// The `@effect/sql` tag, found by its key: this module is imported by the root entry.
const SqlClientTag = Context.GenericTag<SqlClient.SqlClient>("@effect/sql/SqlClient")
const defaultRetries = 10

/** How often a `read(..., keepReading)` looks for events appended by other processes. */
const pollInterval = Duration.millis(500)

/** The 2024 DDL of the table (2024 used CLOB on SQLite). */
const createTable = (sql: SqlClient.SqlClient, dialect: Dialect, table: string) => {
  const T = sql(table)
  const pkey = sql(`${table}_pkey`)
  return dialect === "pg"
    ? sql`CREATE TABLE IF NOT EXISTS ${T} (
        execution_id VARCHAR(255) NOT NULL,
        sequence INT DEFAULT 0,
        event_json TEXT NOT NULL,
        CONSTRAINT ${pkey} PRIMARY KEY (execution_id, sequence)
      )`
    : sql`CREATE TABLE IF NOT EXISTS ${T} (
        execution_id VARCHAR(255) NOT NULL,
        sequence INT DEFAULT 0,
        event_json CLOB NOT NULL,
        CONSTRAINT ${pkey} PRIMARY KEY (execution_id, sequence)
      )`
}

/**
 * Creates the table if it is absent (idempotent). Two processes creating it at once can collide in
 * PostgreSQL's catalog; the retry sees the winner's table.
 */
export const ensureTable = (ctx: SqlContext, table: string): Effect.Effect<void, JournalError> =>
  ctx.operation("createEventLog", Effect.retry(Effect.asVoid(createTable(ctx.sql, ctx.dialect, table)), { times: 2 }))

/** Creates the table on the `SqlClient` in context (the 2024 `layer({ table })` does it at start-up). */
export const create = (table: string): Effect.Effect<void, JournalError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const client = yield* SqlClientTag
    const dialect = yield* dialectOf(client)
    yield* withRetries(
      defaultRetries,
      "createEventLog",
      Effect.retry(Effect.asVoid(createTable(client.withoutTransforms(), dialect, table)), { times: 2 })
    )
  })

/**
 * The store on `table`. Its operations create the table first (once), so a journal whose 2024 methods
 * are never called creates nothing.
 */
export const make = (ctx: SqlContext, table: string): EventLogStore => {
  const { sql } = ctx
  const T = sql(table)
  let created = false
  const ready = Effect.suspend(() =>
    created ? Effect.void : Effect.tap(ensureTable(ctx, table), () => {
      created = true
    })
  )
  const changes = makeChanges()
  return {
    insert: (persistenceId, sequence, json) =>
      Effect.zipRight(
        ready,
        ctx.operation(
          "append",
          Effect.flatMap(
            sql<{ sequence: number }>`INSERT INTO ${T} (execution_id, sequence, event_json)
              VALUES (${persistenceId}, ${sequence}, ${json})
              ON CONFLICT (execution_id, sequence) DO NOTHING RETURNING sequence`,
            (inserted) =>
              inserted.length > 0
                ? Effect.sync(() => {
                  changes.notify()
                  return undefined
                })
                : Effect.map(
                  sql<{ event_json: string }>`SELECT event_json FROM ${T}
                    WHERE execution_id = ${persistenceId} AND sequence = ${sequence}`,
                  (rows) => rows[0]?.event_json
                )
          )
        )
      ),
    select: (persistenceId, fromSequence) =>
      Effect.zipRight(
        ready,
        ctx.read(
          "read",
          Effect.map(
            sql<{ sequence: number; event_json: string }>`SELECT sequence, event_json FROM ${T}
              WHERE execution_id = ${persistenceId} AND sequence >= ${fromSequence} ORDER BY sequence`,
            (rows) => rows.map((row) => ({ sequence: Number(row.sequence), json: row.event_json }))
          )
        )
      ),
    // Other processes append too: wake on a local append or after the poll interval.
    waitForChange: (since) => Effect.raceFirst(Deferred.await(since), Effect.sleep(pollInterval)),
    changes: changes.current
  }
}
