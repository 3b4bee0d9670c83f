/**
 * The durable execution journal: where the engine records every execution, its events and its inbox.
 *
 * The journal is an *encoded* driver: it sees only strings, numbers and JSON text. The engine owns the
 * schemas and does all encoding and decoding, so the in-memory journal stores exactly what a SQL journal
 * stores, and a schema that does not round-trip fails in memory too. docs/journal.md describes the
 * event model; docs/sql-schema.md the tables.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Journal, JournalError } from "./internal/journal.js"
import { DurableExecutionJournal } from "./internal/journal.js"
import * as SqlEventLog from "./internal/sql/eventLog.js"
import * as SqlJournal from "./internal/sql/journal.js"

export * from "./internal/journal.js"

/**
 * The 2024 SQL journal on the `SqlClient` in context (SQLite or PostgreSQL). Creates, if absent, the 2024
 * events table named exactly `table` (columns `execution_id`, `sequence`, `event_json`; `append`/`read`
 * use it, so an existing 2024 journal is read as it is), and beside it the engine's tables, prefixed with
 * `table` (`<table>_executions`, `<table>_events`, `<table>_signals`, `<table>_migrations`), created or
 * upgraded at start-up. `DurableExecutionJournalSql.make` takes the richer options (it creates the 2024
 * table on first use of `append`/`read`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: DurableExecutionJournal.MakeOptions
): Effect.Effect<Journal, JournalError, SqlClient.SqlClient> =>
  Effect.tap(SqlJournal.make({ prefix: options.table, clock: options.clock }), () => SqlEventLog.create(options.table))

/**
 * The 2024 SQL journal layer: needs only a `SqlClient`. See `make`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: DurableExecutionJournal.MakeOptions
): Layer.Layer<DurableExecutionJournal, JournalError, SqlClient.SqlClient> =>
  Layer.effect(DurableExecutionJournal, make(options))
