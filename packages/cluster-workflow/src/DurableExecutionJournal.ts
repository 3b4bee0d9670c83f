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
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { DurableExecutionJournal, Journal, JournalError } from "./internal/journal.js"
import * as SqlJournal from "./internal/sql/journal.js"

export * from "./internal/journal.js"

/**
 * The 2024 SQL journal on the `SqlClient` in context (SQLite or PostgreSQL). `table` is the prefix of the
 * journal's tables (`<table>_executions`, `<table>_events`, `<table>_signals`, `<table>_migrations`), which
 * are created or upgraded at start-up. `DurableExecutionJournalSql.make` takes the richer options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: { readonly table: string }): Effect.Effect<Journal, JournalError, SqlClient.SqlClient> =>
  SqlJournal.make({ prefix: options.table })

/**
 * The 2024 SQL journal layer: needs only a `SqlClient`. See `make`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: { readonly table: string }
): Layer.Layer<DurableExecutionJournal, JournalError, SqlClient.SqlClient> =>
  SqlJournal.layer({ prefix: options.table })
