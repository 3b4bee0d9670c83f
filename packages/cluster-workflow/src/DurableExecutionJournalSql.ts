/**
 * The SQL journal: a `DurableExecutionJournal` on `@effect/sql`'s `SqlClient`, with one set of statements
 * for SQLite (`@effect/sql-libsql`) and PostgreSQL (`@effect/sql-pg`).
 *
 * It behaves exactly like `DurableExecutionJournalInMemory`, operation by operation (the journal contract
 * tests run the same suite against both). docs/sql-schema.md describes the tables, the indexes, the
 * statements of each operation and why fencing holds under PostgreSQL's READ COMMITTED.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { DurableExecutionJournal, Journal, JournalError } from "./internal/journal.js"
import { connectError } from "./internal/sql/errors.js"
import * as Migrations from "./internal/sql/migrations.js"
import * as SqlJournal from "./internal/sql/journal.js"
import type { SqlJournalOptions } from "./internal/sql/tables.js"

export { defaultPrefix, schemaVersion, tableNames } from "./internal/sql/tables.js"
export type { SqlJournalOptions, TableNames } from "./internal/sql/tables.js"
export { type ProcessLiveness, ProcessLivenessService } from "./internal/sql/liveness.js"

/**
 * Builds a SQL journal on the `SqlClient` in context (SQLite or PostgreSQL), creating or upgrading its
 * tables first unless `migrate: false`. A client that cannot connect at the journal's first statement fails
 * it with a `JournalError` (operation `"connect"`) that says why (see `layerOn` for a client layer that
 * connects while it is built, as `PgClient.layer` does).
 *
 * On SQLite every writing operation runs in its own (short) transaction: `@effect/sql-libsql` serialises a
 * process's transactions, so no write of the journal can interleave with another fiber's commit; reads are
 * plain statements, which wait for the process's open transaction and, in WAL mode, never block another
 * process's writer. Use
 * `@effect-cluster/cluster-workflow/sqlite` for a client that keeps one connection with WAL,
 * `synchronous=NORMAL` and a busy timeout (the stock `LibsqlClient` opens a new connection per
 * transaction and never closes the old one).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: SqlJournalOptions): Effect.Effect<Journal, JournalError, SqlClient.SqlClient> =>
  SqlJournal.make(options)

/**
 * A layer with the SQL journal on the `SqlClient` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: SqlJournalOptions
): Layer.Layer<DurableExecutionJournal, JournalError, SqlClient.SqlClient> => SqlJournal.layer(options)

/**
 * The SQL journal on a client layer it builds (for example `PgClient.layer({ url })`), keeping the client's
 * services in the output. A client that cannot connect fails the layer with a `JournalError` (operation
 * `"connect"`) whose message says why: the connection was refused (host and port), the host was not
 * found, the database or the role does not exist, authentication failed, or the URL is malformed. The
 * driver alone says only `PgClient: Failed to connect`. The message never contains the URL (nor its
 * password).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerOn = <ROut extends SqlClient.SqlClient, E, RIn>(
  client: Layer.Layer<ROut, E, RIn>,
  options?: SqlJournalOptions
): Layer.Layer<DurableExecutionJournal | ROut, JournalError, RIn | Exclude<SqlClient.SqlClient, ROut>> =>
  SqlJournal.layer(options).pipe(Layer.provideMerge(Layer.mapError(client, connectError)))

/**
 * Turns a client's connection failure (for example the `SqlError` of a `PgClient.layer` that could not
 * connect) into a `JournalError` whose message says why; see `layerOn`.
 *
 * @since 0.1.0
 * @category errors
 */
export const connectionError: (cause: unknown) => JournalError = connectError

/**
 * Creates or upgrades the journal's tables for a prefix (idempotent; concurrent callers are serialised by
 * a transaction, on PostgreSQL with an advisory lock).
 *
 * @since 0.1.0
 * @category migrations
 */
export const migrate = (
  options?: { readonly prefix?: string | undefined }
): Effect.Effect<ReadonlyArray<number>, JournalError, SqlClient.SqlClient> => Migrations.migrate(options)
