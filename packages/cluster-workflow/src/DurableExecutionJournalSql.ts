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
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type {
  ClaimResult,
  EventRow,
  ExecutionKey,
  ExecutionRow,
  ExecutionStatus,
  Journal,
  JournalWrite,
  ListOptions,
  SignalRow,
  WriteResult
} from "./DurableExecutionJournal.js"
import { DurableExecutionJournal, formatVersion, isTerminal, JournalError } from "./DurableExecutionJournal.js"

// NOTE: DurableExecutionJournal.ts imports this module (for its 2024 `make` / `layer`), so nothing here may
// use an import from it at module evaluation time: only inside functions.

/**
 * Options of the SQL journal.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqlJournalOptions {
  /**
   * Prefix of the table and index names (`<prefix>_executions`, `<prefix>_events`, `<prefix>_signals`,
   * `<prefix>_migrations`). Letters, digits and `_`, starting with a letter or `_`, at most 40 characters.
   * Two prefixes in one database are two independent journals. Default: `"effect_workflow"`.
   */
  readonly prefix?: string | undefined
  /** Create and upgrade the tables at start-up (versioned migrations). Default: `true`. */
  readonly migrate?: boolean | undefined
  /**
   * How often an operation refused with `SQLITE_BUSY` / `SQLITE_LOCKED` (or a PostgreSQL deadlock or
   * serialization failure, which roll the whole transaction back) is retried, with jittered exponential
   * backoff from 5 ms capped at 250 ms, on the live clock. Then it fails with a retryable `JournalError`.
   * Default: 10 (about 1.5 s in all).
   */
  readonly busyRetries?: number | undefined
  /**
   * SQLite only: switch the database file to WAL mode at start-up (a persistent property of the file).
   * Default: `true`. See docs/sql-schema.md for the durability trade-off of the settings.
   */
  readonly sqliteWal?: boolean | undefined
}

/**
 * The default table prefix.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPrefix = "effect_workflow"

/**
 * The schema version the migrations of this release create.
 *
 * @since 0.1.0
 * @category constants
 */
export const schemaVersion = 1

/**
 * The table names of a prefix.
 *
 * @since 0.1.0
 * @category models
 */
export interface TableNames {
  readonly executions: string
  readonly events: string
  readonly signals: string
  readonly migrations: string
}

const prefixPattern = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/

/**
 * The table names of a prefix; fails with a (non-retryable) `JournalError` if the prefix is not a plain
 * identifier of at most 40 characters.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tableNames = (prefix: string = defaultPrefix): Effect.Effect<TableNames, JournalError> =>
  prefixPattern.test(prefix)
    ? Effect.succeed({
      executions: `${prefix}_executions`,
      events: `${prefix}_events`,
      signals: `${prefix}_signals`,
      migrations: `${prefix}_migrations`
    })
    : Effect.fail(
      new JournalError({
        operation: "make",
        message: `Invalid journal table prefix ${
          JSON.stringify(prefix)
        }: use letters, digits and "_", starting with a letter or "_", at most 40 characters`,
        retryable: false
      })
    )

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

const errorCodes = (cause: unknown): Array<string> => {
  const codes: Array<string> = []
  const visit = (u: unknown, depth: number) => {
    if (depth > 4 || !Predicate.isObject(u)) return
    const code = (u as { code?: unknown }).code
    if (typeof code === "string") codes.push(code)
    const errors = (u as { errors?: unknown }).errors
    if (Array.isArray(errors)) for (const e of errors) visit(e, depth + 1)
    visit((u as { cause?: unknown }).cause, depth + 1)
  }
  visit(cause, 0)
  return codes
}

const errorMessage = (cause: unknown): string => {
  if (Predicate.isObject(cause)) {
    const message = (cause as { message?: unknown }).message
    const inner = (cause as { cause?: unknown }).cause
    const own = typeof message === "string" ? message : ""
    const nested = inner !== undefined && inner !== cause ? errorMessage(inner) : ""
    return nested !== "" && nested !== own ? (own !== "" ? `${own}: ${nested}` : nested) : own
  }
  return String(cause)
}

/** SQLite busy/locked, PostgreSQL deadlock / serialization failure: the transaction was rolled back. */
const isBusy = (codes: ReadonlyArray<string>): boolean =>
  codes.some((code) =>
    code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || code === "40001" || code === "40P01" ||
    code === "55P03"
  )

const connectionErrorCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "53400" // configuration_limit_exceeded
])

const connectionMessages = [
  "Connection terminated",
  "connection timeout",
  "timeout exceeded when trying to connect",
  "Client has encountered a connection error",
  "Connection timed out",
  "Failed to acquire connection"
]

/** Whether the connection failed (refused, lost, server shutting down). */
const isConnectionError = (cause: unknown): boolean => {
  if (errorCodes(cause).some((code) => connectionErrorCodes.has(code) || code.startsWith("08"))) return true
  const message = errorMessage(cause)
  return connectionMessages.some((m) => message.includes(m))
}

/** Whether an error of the database is transient: busy, deadlock, or the connection (a retry may help). */
const isRetryable = (cause: unknown): boolean => isBusy(errorCodes(cause)) || isConnectionError(cause)

/** A failure of the user's effect inside `sql.withTransaction`, kept apart from the journal's own errors. */
class UserFailure<E> {
  constructor(readonly error: E) {}
}

/** COMMIT failed (`@effect/sql` turns that into a defect): the outcome is unknown to the caller. */
class CommitFailure {
  constructor(readonly cause: unknown) {}
}

const isSqlError = (u: unknown): u is SqlError => Predicate.isTagged(u, "SqlError")

const toJournalError = (operation: string, error: SqlError | CommitFailure): JournalError =>
  error instanceof CommitFailure
    ? new JournalError({
      operation,
      message: `The transaction's COMMIT failed, its outcome is unknown (read to resolve it): ${
        errorMessage(error.cause)
      }`,
      retryable: isRetryable(error.cause)
    })
    : new JournalError({
      operation,
      message: operation === "commit" && isConnectionError(error)
        // The statement (or the transaction's COMMIT) may have been applied before the connection went.
        ? `The connection failed during the commit, its outcome is unknown (read to resolve it): ${
          errorMessage(error)
        }`
        : errorMessage(error) || "SQL error",
      retryable: isRetryable(error)
    })

// ---------------------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------------------

/** pg returns BIGINT as a string, libsql may return bigint (intMode), SQLite INTEGER as number. */
const num = (u: unknown): number => typeof u === "number" ? u : typeof u === "bigint" ? Number(u) : Number(u)
const numOrNull = (u: unknown): number | null => u === null || u === undefined ? null : num(u)
const str = (u: unknown): string =>
  typeof u === "string" ? u : u === null || u === undefined ? "" : u instanceof ArrayBuffer ?
  new TextDecoder().decode(u) : String(u)
const strOrNull = (u: unknown): string | null => u === null || u === undefined ? null : str(u)
const bool = (u: unknown): boolean => u === true || (u !== false && u !== null && u !== undefined && num(u) !== 0)

const executionColumns = "workflow, execution_id, payload, payload_hash, version, parent, status, suspended_on, " +
  "wake_at, result, claim_owner, claim_epoch, claim_until, cancel_requested, inbox_version, created_at, " +
  "updated_at, completed_at, format_version"

const executionColumnsOf = (alias: string) =>
  executionColumns.split(", ").map((column) => `${alias}.${column}`).join(", ")

const decodeExecution = (r: Record<string, unknown>): ExecutionRow => ({
  workflow: str(r.workflow),
  executionId: str(r.execution_id),
  payload: str(r.payload),
  payloadHash: str(r.payload_hash),
  version: str(r.version),
  parent: strOrNull(r.parent),
  // Opaque at this layer: the engine validates the status it reads.
  status: str(r.status) as ExecutionStatus,
  suspendedOn: strOrNull(r.suspended_on),
  wakeAt: numOrNull(r.wake_at),
  result: strOrNull(r.result),
  claimOwner: strOrNull(r.claim_owner),
  claimEpoch: num(r.claim_epoch),
  claimUntil: numOrNull(r.claim_until),
  cancelRequested: bool(r.cancel_requested),
  inboxVersion: num(r.inbox_version),
  createdAt: num(r.created_at),
  updatedAt: num(r.updated_at),
  completedAt: numOrNull(r.completed_at),
  formatVersion: num(r.format_version)
})

const decodeEvent = (r: Record<string, unknown>): EventRow => ({
  sequence: num(r.sequence),
  kind: str(r.kind),
  stepKind: str(r.step_kind),
  stepScope: str(r.step_scope),
  stepId: str(r.step_id),
  attempt: num(r.attempt),
  body: str(r.body)
})

const decodeSignal = (r: Record<string, unknown>): SignalRow => ({
  name: str(r.name),
  value: str(r.value),
  createdAt: num(r.created_at)
})

const keyId = (workflow: string, executionId: string): string => JSON.stringify([workflow, executionId])
const rowKeyId = (r: Record<string, unknown>): string => keyId(str(r.workflow), str(r.execution_id))

const compareKeys = (a: ExecutionKey, b: ExecutionKey): number =>
  a.workflow < b.workflow ? -1 : a.workflow > b.workflow ? 1 : a.executionId < b.executionId ? -1 : a.executionId >
      b.executionId ? 1 : 0

const terminalStatuses = "('completed', 'failed', 'cancelled')"

// ---------------------------------------------------------------------------------------------------------
// Record sources: a whole batch as ONE JSON parameter, expanded to rows by the database.
// ---------------------------------------------------------------------------------------------------------

type ColumnType = "text" | "bigint"

interface RecordSource<K extends string> {
  readonly columns: ReadonlyArray<readonly [K, ColumnType]>
  readonly pg: string
  readonly sqlite: string
}

const recordSource = <K extends string>(columns: ReadonlyArray<readonly [K, ColumnType]>): RecordSource<K> => ({
  columns,
  pg: columns.map(([name, type]) => `${name} ${type}`).join(", "),
  sqlite: columns.map(([name]) => `json_extract(value, '$.${name}') AS ${name}`).join(", ")
})

const startSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["payload", "text"],
  ["hash", "text"],
  ["version", "text"],
  ["parent", "text"],
  ["status", "text"],
  ["owner", "text"],
  ["until_", "bigint"],
  ["next_seq", "bigint"],
  ["now_", "bigint"],
  ["updated_", "bigint"],
  ["result", "text"],
  ["completed_at", "bigint"]
])

const appendSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["owner", "text"],
  ["epoch", "bigint"],
  ["first_seq", "bigint"],
  ["next_seq", "bigint"],
  ["status", "text"],
  ["result", "text"],
  ["completed_at", "bigint"],
  ["cancel_handled", "bigint"],
  ["terminal", "bigint"],
  ["touched", "bigint"],
  ["now_", "bigint"]
])

const eventSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["seq", "bigint"],
  ["kind", "text"],
  ["sk", "text"],
  ["ss", "text"],
  ["si", "text"],
  ["attempt", "bigint"],
  ["body", "text"]
])

const suspendSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["owner", "text"],
  ["epoch", "bigint"],
  ["inbox", "bigint"],
  ["susp", "text"],
  ["wake", "bigint"],
  ["now_", "bigint"]
])

const keySource = recordSource([["w", "text"], ["e", "text"]])

const renewSource = recordSource([["w", "text"], ["e", "text"], ["epoch", "bigint"]])

// ---------------------------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------------------------

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
  }
]

/** Quotes an identifier for the client's dialect. */
const q = (sql: SqlClient.SqlClient, name: string): string =>
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
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
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

// ---------------------------------------------------------------------------------------------------------
// Retry on the live clock
// ---------------------------------------------------------------------------------------------------------

const liveClock = Clock.make()

/** Jittered exponential backoff: 5 ms, 10 ms, 20 ms ... capped at 250 ms. */
const backoff = (attempt: number): Duration.Duration =>
  Duration.millis(Math.min(250, 5 * 2 ** attempt) * (0.5 + Math.random()))

/**
 * Retries `effect` while `retryable` says so, sleeping between attempts on the live clock (only the sleep:
 * the effect itself keeps the fiber's clock, so tests on TestClock neither hang nor see real time).
 */
const retryLive = <A, E, R>(
  operation: string,
  effect: Effect.Effect<A, E, R>,
  retries: number,
  retryable: (error: E) => boolean
): Effect.Effect<A, E, R> => {
  const loop = (attempt: number): Effect.Effect<A, E, R> =>
    Effect.catchIf(
      effect,
      (error) => attempt < retries && retryable(error),
      () =>
        Effect.logDebug("Journal database busy, retrying").pipe(
          Effect.annotateLogs({ operation, attempt: attempt + 1 }),
          Effect.zipRight(Effect.withClock(Effect.sleep(backoff(attempt)), liveClock)),
          Effect.zipRight(loop(attempt + 1))
        )
    )
  return loop(0)
}

/** A failed COMMIT is a defect in `@effect/sql`: turn it back into a typed (unknown-outcome) failure. */
const catchCommitDefect = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | CommitFailure, R> =>
  Effect.catchAllDefect(effect, (defect) =>
    isSqlError(defect) ? Effect.fail(new CommitFailure(defect.cause ?? defect)) : Effect.die(defect))

/**
 * Runs `body` in a transaction. `@effect/sql` turns a failed COMMIT or ROLLBACK into a defect: after the
 * body failed, a failed ROLLBACK (say, the connection is gone) leaves the body's failure (nothing was
 * committed: the server aborts the transaction); after it succeeded, a failed COMMIT is a `CommitFailure`
 * whose outcome is unknown.
 */
const inTransaction = <A, E, R>(
  withTransaction: <A1, E1, R1>(self: Effect.Effect<A1, E1, R1>) => Effect.Effect<A1, E1 | SqlError, R1>,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError | CommitFailure, R> =>
  Effect.suspend(() => {
    let failure: { readonly error: E } | undefined
    return Effect.catchAllDefect(
      withTransaction(Effect.tapError(body, (error) =>
        Effect.sync(() => {
          failure = { error }
        }))),
      (defect): Effect.Effect<never, E | CommitFailure> =>
        !isSqlError(defect)
          ? Effect.die(defect)
          : failure !== undefined
          ? Effect.fail(failure.error)
          : Effect.fail(new CommitFailure(defect.cause ?? defect))
    )
  })

const isBusyError = (error: unknown): boolean => isSqlError(error) && isBusy(errorCodes(error))

/**
 * Runs a journal operation: busy / deadlocked transactions (rolled back as a whole) are retried with
 * backoff, then every SQL failure becomes a `JournalError`.
 */
const withRetries = <A, R>(
  retries: number,
  operation: string,
  effect: Effect.Effect<A, SqlError | CommitFailure | JournalError, R>
): Effect.Effect<A, JournalError, R> =>
  Effect.mapError(
    retryLive(operation, catchCommitDefect(effect), retries, isBusyError),
    (error) => error instanceof JournalError ? error : toJournalError(operation, error)
  )

// ---------------------------------------------------------------------------------------------------------
// The journal
// ---------------------------------------------------------------------------------------------------------

type Row = Record<string, unknown>

/**
 * Builds a SQL journal on the `SqlClient` in context (SQLite or PostgreSQL), creating or upgrading its
 * tables first unless `migrate: false`.
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
export const make = (
  options?: SqlJournalOptions
): Effect.Effect<Journal, JournalError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const client = yield* SqlClient.SqlClient
    const sql = client.withoutTransforms()
    const prefix = options?.prefix ?? defaultPrefix
    const t = yield* tableNames(prefix)
    const retries = options?.busyRetries ?? 10
    const dialect = sql.onDialectOrElse({
      pg: () => "pg" as const,
      sqlite: () => "sqlite" as const,
      orElse: () => "other" as const
    })
    if (dialect === "other") {
      return yield* new JournalError({
        operation: "make",
        message: "The SQL journal supports SQLite (@effect/sql-libsql) and PostgreSQL (@effect/sql-pg)",
        retryable: false
      })
    }
    if (dialect === "sqlite" && options?.sqliteWal !== false) {
      yield* withRetries(retries, "make", sql`PRAGMA journal_mode = WAL`)
    }
    if (options?.migrate !== false) yield* migrate({ prefix })

    const E = sql(t.executions)
    const V = sql(t.events)
    const S = sql(t.signals)
    const cols = sql.literal(executionColumns)
    const xcols = sql.literal(executionColumnsOf("x"))
    const terminal = sql.literal(terminalStatuses)
    const forUpdate = sql.literal(dialect === "pg" ? " FOR UPDATE" : "")

    /** One transaction, retried as a whole while the database is busy. */
    const transaction = <A>(operation: string, effect: Effect.Effect<A, SqlError>) =>
      withRetries(retries, operation, inTransaction(sql.withTransaction, effect))
    /** One writing operation: a transaction on SQLite (see above), autocommit statements on PostgreSQL. */
    const operation = <A>(name: string, effect: Effect.Effect<A, SqlError>) =>
      dialect === "sqlite" ? transaction(name, effect) : withRetries(retries, name, effect)
    /**
     * One reading operation: a plain statement. (On SQLite it waits for the process's open transaction, and
     * in WAL mode it does not take the write lock, so it never makes another process's writer wait.)
     */
    const read = <A>(name: string, effect: Effect.Effect<A, SqlError>) => withRetries(retries, name, effect)

    /** A batch of records as a derived table `v`, from ONE JSON parameter. */
    const source = <K extends string>(
      src: RecordSource<K>,
      rows: ReadonlyArray<Record<K, string | number | null>>
    ): Statement.Fragment =>
      dialect === "pg"
        ? sql`(SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::json) AS r(${sql.literal(src.pg)})) AS v`
        : sql`(SELECT ${sql.literal(src.sqlite)} FROM json_each(${JSON.stringify(rows)})) AS v`

    const limitOf = (limit: number) => sql.literal(String(Math.max(0, Math.floor(limit))))
    const inWorkflows = (workflows: ReadonlyArray<string>) => sql`workflow IN ${sql.in(workflows)}`

    const selectRows = (keys: ReadonlyArray<ExecutionKey>) =>
      Effect.map(
        sql<Row>`SELECT ${xcols} FROM ${E} AS x JOIN ${
          source(keySource, keys.map((k) => ({ w: k.workflow, e: k.executionId })))
        } ON x.workflow = v.w AND x.execution_id = v.e`,
        (rows) => new Map(rows.map((r) => [rowKeyId(r), decodeExecution(r)]))
      )

    const selectRow = (key: ExecutionKey) =>
      Effect.map(
        sql<Row>`SELECT ${cols} FROM ${E} WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}`,
        (rows) => rows.length === 0 ? undefined : decodeExecution(rows[0]!)
      )

    // --- commit -----------------------------------------------------------------------------------------

    type Start = Extract<JournalWrite, { _tag: "Start" }>
    type Append = Extract<JournalWrite, { _tag: "Append" }>
    type Suspend = Extract<JournalWrite, { _tag: "Suspend" }>
    type Indexed<W> = { readonly index: number; readonly write: W }
    type EventRecord = Record<(typeof eventSource.columns)[number][0], string | number>

    /** A Start, possibly fused with the Append that follows it in the batch (see `commit`). */
    interface StartPlan extends Indexed<Start> {
      readonly fused: Indexed<Append> | undefined
    }

    const startRecord = ({ fused, write }: StartPlan) => {
      const record = {
        w: write.key.workflow,
        e: write.key.executionId,
        payload: write.payload,
        hash: write.payloadHash,
        version: write.version,
        parent: write.parent,
        status: "running" as string,
        owner: write.owner as string | null,
        until_: write.claimUntil as number | null,
        next_seq: 0,
        now_: write.now,
        updated_: write.now,
        result: null as string | null,
        completed_at: null as number | null
      }
      if (fused === undefined) return record
      // The row exactly as the in-memory journal leaves it after Start then this Append.
      const { events, now, update } = fused.write
      const terminal = update?.status !== undefined && isTerminal(update.status)
      record.status = update?.status ?? "running"
      record.owner = terminal ? null : write.owner
      record.until_ = terminal ? null : write.claimUntil
      record.next_seq = events.length === 0 ? 0 : events[events.length - 1]!.sequence + 1
      record.updated_ = update === undefined ? write.now : now
      record.result = update?.result ?? null
      record.completed_at = update?.completedAt ?? null
      return record
    }

    const byKey = <W extends JournalWrite>(a: Indexed<W>, b: Indexed<W>) => compareKeys(a.write.key, b.write.key)
    const writeId = (write: JournalWrite) => keyId(write.key.workflow, write.key.executionId)

    /**
     * Inserts the absent executions; returns the keys it created. A start fused with the append that
     * follows it (see `commit`) inserts the row as that append leaves it.
     */
    const insertStarts = (starts: ReadonlyArray<StartPlan>) =>
      sql<Row>`INSERT INTO ${E} (workflow, execution_id, payload, payload_hash, version, parent, status,
  claim_owner, claim_epoch, claim_until, cancel_requested, inbox_version, next_sequence, created_at, updated_at,
  result, completed_at, format_version)
SELECT v.w, v.e, v.payload, v.hash, v.version, v.parent, v.status, v.owner, 1, v.until_, 0, 0, v.next_seq, v.now_,
  v.updated_, v.result, v.completed_at, ${formatVersion}
FROM ${source(startSource, starts.map(startRecord))} WHERE true
ON CONFLICT DO NOTHING
RETURNING workflow, execution_id`

    /**
     * The fenced update of the appends' rows: only where (owner, epoch) still holds the claim of a
     * non-terminal execution and the events continue its sequence. Returns the keys it updated; on
     * PostgreSQL the row lock it takes makes a concurrent claim wait for this transaction (docs/sql-schema.md).
     */
    const updateAppends = (appends: ReadonlyArray<Indexed<Append>>) =>
      sql<Row>`UPDATE ${E} AS x SET
  status = COALESCE(v.status, x.status),
  result = COALESCE(v.result, x.result),
  completed_at = COALESCE(v.completed_at, x.completed_at),
  cancel_requested = CASE WHEN v.cancel_handled = 1 THEN 0 ELSE x.cancel_requested END,
  claim_owner = CASE WHEN v.terminal = 1 THEN NULL ELSE x.claim_owner END,
  claim_until = CASE WHEN v.terminal = 1 THEN NULL ELSE x.claim_until END,
  suspended_on = CASE WHEN v.terminal = 1 THEN NULL ELSE x.suspended_on END,
  wake_at = CASE WHEN v.terminal = 1 THEN NULL ELSE x.wake_at END,
  updated_at = CASE WHEN v.touched = 1 THEN v.now_ ELSE x.updated_at END,
  next_sequence = COALESCE(v.next_seq, x.next_sequence)
FROM ${
        source(
          appendSource,
          appends.map(({ write }) => {
            const events = write.events
            const update = write.update
            return {
              w: write.key.workflow,
              e: write.key.executionId,
              owner: write.fence.owner,
              epoch: write.fence.epoch,
              first_seq: events.length === 0 ? null : events[0]!.sequence,
              next_seq: events.length === 0 ? null : events[events.length - 1]!.sequence + 1,
              status: update?.status ?? null,
              result: update?.result ?? null,
              completed_at: update?.completedAt ?? null,
              cancel_handled: update?.cancelHandled ? 1 : 0,
              terminal: update?.status !== undefined && isTerminal(update.status) ? 1 : 0,
              touched: update === undefined ? 0 : 1,
              now_: write.now
            }
          })
        )
      }
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = v.owner AND x.claim_epoch = v.epoch
  AND x.status NOT IN ${terminal} AND (v.first_seq IS NULL OR x.next_sequence <= v.first_seq)
RETURNING workflow, execution_id`

    const eventRecords = (appends: ReadonlyArray<Indexed<Append>>): Array<EventRecord> => {
      const records: Array<EventRecord> = []
      for (const { write } of appends) {
        for (const event of write.events) {
          records.push({
            w: write.key.workflow,
            e: write.key.executionId,
            seq: event.sequence,
            kind: event.kind,
            sk: event.stepKind,
            ss: event.stepScope,
            si: event.stepId,
            attempt: event.attempt,
            body: event.body
          })
        }
      }
      return records
    }

    /** Inserts events; `only` restricts them to the appends that took effect (a CTE of their keys). */
    const insertEvents = (records: ReadonlyArray<EventRecord>, only: Statement.Fragment) =>
      sql`INSERT INTO ${V} (workflow, execution_id, sequence, kind, step_kind, step_scope, step_id, attempt, body,
  format_version)
SELECT v.w, v.e, v.seq, v.kind, v.sk, v.ss, v.si, v.attempt, v.body, ${formatVersion} FROM ${
        source(eventSource, records)
      }${only}`

    /** The fenced suspension, also requiring the inbox version the engine saw. Returns the keys it updated. */
    const updateSuspends = (suspends: ReadonlyArray<Indexed<Suspend>>) =>
      sql<Row>`UPDATE ${E} AS x SET status = 'suspended', suspended_on = v.susp, wake_at = v.wake,
  claim_owner = NULL, claim_until = NULL, updated_at = v.now_
FROM ${
        source(
          suspendSource,
          suspends.map(({ write }) => ({
            w: write.key.workflow,
            e: write.key.executionId,
            owner: write.fence.owner,
            epoch: write.fence.epoch,
            inbox: write.inboxVersion,
            susp: write.suspendedOn,
            wake: write.wakeAt,
            now_: write.now
          }))
        )
      }
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = v.owner AND x.claim_epoch = v.epoch
  AND x.status NOT IN ${terminal} AND x.inbox_version = v.inbox
RETURNING workflow, execution_id`

    interface Round {
      readonly starts: Array<StartPlan>
      readonly appends: Array<Indexed<Append>>
      readonly suspends: Array<Indexed<Suspend>>
    }

    interface Applied {
      readonly created: ReadonlySet<string>
      /** The rows of the starts that were not created, as they were before this round. */
      readonly existing: ReadonlyMap<string, ExecutionRow>
      readonly appended: ReadonlySet<string>
      readonly suspended: ReadonlySet<string>
    }

    const idsOf = (rows: ReadonlyArray<Row>) => new Set(rows.map(rowKeyId))
    const none: ReadonlySet<string> = new Set()
    const noRows: ReadonlyMap<string, ExecutionRow> = new Map()

    /** Fused appends of starts that found their execution: they apply to it like any other append. */
    const fusedOf = (starts: ReadonlyArray<StartPlan>, created: ReadonlySet<string>) => {
      const appends: Array<Indexed<Append>> = []
      for (const start of starts) {
        if (start.fused !== undefined && !created.has(writeId(start.write))) appends.push(start.fused)
      }
      return appends
    }

    /** SQLite: one statement per kind of write (in-process, so statements are cheap). */
    const applySqlite = (round: Round): Effect.Effect<Applied, SqlError> =>
      Effect.gen(function*() {
        let created = none
        let existing = noRows
        let appends = round.appends
        if (round.starts.length > 0) {
          created = idsOf(yield* insertStarts(round.starts))
          const found = round.starts.filter((start) => !created.has(writeId(start.write)))
          if (found.length > 0) existing = yield* selectRows(found.map(({ write }) => write.key))
          const createdEvents = eventRecords(
            round.starts.flatMap((start) =>
              start.fused !== undefined && created.has(writeId(start.write)) ? [start.fused] : []
            )
          )
          if (createdEvents.length > 0) yield* insertEvents(createdEvents, sql.literal(""))
          const fused = fusedOf(round.starts, created)
          if (fused.length > 0) appends = [...appends, ...fused]
        }
        let appended = none
        if (appends.length > 0) {
          appended = idsOf(yield* updateAppends(appends))
          const records = eventRecords(appends.filter(({ write }) => appended.has(writeId(write))))
          if (records.length > 0) yield* insertEvents(records, sql.literal(""))
        }
        const suspended = round.suspends.length > 0 ? idsOf(yield* updateSuspends(round.suspends)) : none
        return { created, existing, appended, suspended }
      })

    const rowColumnsAsNull = sql.literal(executionColumns.split(", ").slice(2).map((c) => `NULL AS ${c}`).join(", "))

    /**
     * PostgreSQL: the whole round is ONE statement (data-modifying CTEs), so a batch of one round is one
     * round trip and atomic without an explicit transaction. All CTEs see the snapshot from before the
     * statement: `o` reads the rows the starts find (for `Exists`), the fenced UPDATE `a` also carries the
     * fused appends (it matches only the executions that existed before, the ones `s` did not create), and
     * events are inserted only for the appends that took effect (joins on `s` and `a`).
     */
    const applyPg = (round: Round): Effect.Effect<Applied, SqlError> => {
      const parts: Array<Statement.Fragment> = []
      const selects: Array<Statement.Fragment> = []
      const fused = round.starts.flatMap((start) => start.fused === undefined ? [] : [start.fused])
      const appends = fused.length === 0 ? round.appends : [...round.appends, ...fused]
      if (round.starts.length > 0) {
        parts.push(sql`o AS (SELECT ${xcols} FROM ${E} AS x JOIN ${
          source(keySource, round.starts.map(({ write }) => ({ w: write.key.workflow, e: write.key.executionId })))
        } ON x.workflow = v.w AND x.execution_id = v.e)`)
        selects.push(sql`SELECT 'o' AS k, ${cols} FROM o`)
        parts.push(sql`s AS (${insertStarts(round.starts)})`)
        selects.push(sql`SELECT 's' AS k, workflow, execution_id, ${rowColumnsAsNull} FROM s`)
        const records = eventRecords(fused)
        if (records.length > 0) {
          parts.push(
            sql`sev AS (${
              insertEvents(records, sql.literal(" JOIN s ON s.workflow = v.w AND s.execution_id = v.e"))
            })`
          )
        }
      }
      if (appends.length > 0) {
        parts.push(sql`a AS (${updateAppends(appends)})`)
        selects.push(sql`SELECT 'a' AS k, workflow, execution_id, ${rowColumnsAsNull} FROM a`)
        const records = eventRecords(appends)
        if (records.length > 0) {
          parts.push(
            sql`ev AS (${
              insertEvents(records, sql.literal(" JOIN a ON a.workflow = v.w AND a.execution_id = v.e"))
            })`
          )
        }
      }
      if (round.suspends.length > 0) {
        parts.push(sql`p AS (${updateSuspends(round.suspends)})`)
        selects.push(sql`SELECT 'p' AS k, workflow, execution_id, ${rowColumnsAsNull} FROM p`)
      }
      return Effect.map(
        sql<Row>`WITH ${sql.csv(parts)} ${sql.join(" UNION ALL ", false)(selects)}`,
        (rows) => {
          const created = new Set<string>()
          const existing = new Map<string, ExecutionRow>()
          const appended = new Set<string>()
          const suspended = new Set<string>()
          for (const row of rows) {
            const id = rowKeyId(row)
            if (row.k === "o") existing.set(id, decodeExecution(row))
            else if (row.k === "s") created.add(id)
            else if (row.k === "a") appended.add(id)
            else suspended.add(id)
          }
          return { created, existing, appended, suspended }
        }
      )
    }

    const applyRound = (round: Round): Effect.Effect<Applied, SqlError> =>
      round.starts.length === 0 && round.appends.length === 0 && round.suspends.length === 0
        ? Effect.succeed({ created: none, existing: noRows, appended: none, suspended: none })
        : dialect === "pg"
        ? applyPg(round)
        : applySqlite(round)

    /** Whether events continue a fresh execution (no events yet): they must grow from 0. */
    const increasing = (events: ReadonlyArray<EventRow>) => {
      for (let i = 1; i < events.length; i++) {
        if (events[i]!.sequence <= events[i - 1]!.sequence) return false
      }
      return true
    }

    const commit = (writes: ReadonlyArray<JournalWrite>): Effect.Effect<ReadonlyArray<WriteResult>, JournalError> => {
      if (writes.length === 0) return Effect.succeed([])
      const results: Array<WriteResult | undefined> = new Array(writes.length)
      // The writes of each execution, in order. Appends whose event sequences do not grow are fenced now
      // (like the in-memory journal; a refused write changes nothing, so the others are unaffected).
      const byExecution = new Map<string, Array<Indexed<JournalWrite>>>()
      writes.forEach((write, index) => {
        if (write._tag === "Append" && !increasing(write.events)) {
          results[index] = { _tag: "Fenced" }
          return
        }
        const id = writeId(write)
        const list = byExecution.get(id)
        if (list === undefined) byExecution.set(id, [{ index, write }])
        else list.push({ index, write })
      })
      // Rounds: the n-th write of each execution goes to round n, so a round touches each row at most once
      // (a set-based UPDATE ... FROM applies one source row per target row) and writes of one execution
      // apply in order. A Start followed by an Append that its own claim allows (owner, epoch 1, events from
      // sequence 0) is fused into the Start: the row is inserted as the Append leaves it, so a new
      // execution's first commit is one statement.
      const rounds: Array<Round> = []
      const roundAt = (n: number) => rounds[n] ?? (rounds[n] = { starts: [], appends: [], suspends: [] })
      for (const list of byExecution.values()) {
        let n = 0
        for (let i = 0; i < list.length; i++, n++) {
          const { index, write } = list[i]!
          switch (write._tag) {
            case "Start": {
              const next = list[i + 1]
              const fusable = i === 0 && next !== undefined && next.write._tag === "Append" &&
                next.write.fence.owner === write.owner && next.write.fence.epoch === 1 &&
                (next.write.events.length === 0 || next.write.events[0]!.sequence >= 0)
              if (fusable) i++
              roundAt(n).starts.push({ index, write, fused: fusable ? next as Indexed<Append> : undefined })
              break
            }
            case "Append":
              roundAt(n).appends.push({ index, write })
              break
            case "Suspend":
              roundAt(n).suspends.push({ index, write })
              break
          }
        }
      }
      // A stable lock order across engines (fewer deadlocks between concurrent batches).
      for (const round of rounds) {
        round.starts.sort(byKey)
        round.appends.sort(byKey)
        round.suspends.sort(byKey)
      }
      const apply = Effect.gen(function*() {
        for (const round of rounds) {
          const applied = yield* applyRound(round)
          const toRead: Array<StartPlan | Indexed<Suspend>> = []
          for (const start of round.starts) {
            const id = writeId(start.write)
            if (applied.created.has(id)) {
              results[start.index] = { _tag: "Created", epoch: 1 }
              if (start.fused !== undefined) results[start.fused.index] = { _tag: "Ok" }
              continue
            }
            if (start.fused !== undefined) {
              results[start.fused.index] = applied.appended.has(id) ? { _tag: "Ok" } : { _tag: "Fenced" }
            }
            const row = applied.existing.get(id)
            if (row !== undefined) results[start.index] = { _tag: "Exists", row }
            else toRead.push(start)
          }
          for (const { index, write } of round.appends) {
            results[index] = applied.appended.has(writeId(write)) ? { _tag: "Ok" } : { _tag: "Fenced" }
          }
          for (const suspend of round.suspends) {
            if (applied.suspended.has(writeId(suspend.write))) results[suspend.index] = { _tag: "Ok" }
            else toRead.push(suspend)
          }
          if (toRead.length === 0) continue
          // Refused suspensions (a lost claim, or a changed inbox), and starts that met a row inserted
          // concurrently with the statement: one read. Epochs only grow, so a claim seen lost stays lost.
          const rows = yield* selectRows(toRead.map(({ write }) => write.key))
          for (const { index, write } of toRead) {
            const row = rows.get(writeId(write))
            if (write._tag === "Start") {
              if (row === undefined) {
                // Conflicted with a row that a concurrent retention run deleted: let the caller retry.
                return yield* new JournalError({
                  operation: "commit",
                  message: "A started execution disappeared concurrently; retry the commit",
                  retryable: true
                })
              }
              results[index] = { _tag: "Exists", row }
            } else {
              const holds = row !== undefined && row.claimOwner === write.fence.owner &&
                row.claimEpoch === write.fence.epoch && !isTerminal(row.status)
              results[index] = holds ? { _tag: "InboxChanged" } : { _tag: "Fenced" }
            }
          }
        }
        return results as Array<WriteResult>
      })
      // One round on PostgreSQL is one statement: atomic on its own. Otherwise one transaction.
      const single = dialect === "pg" && rounds.length <= 1
      return withRetries(retries, "commit", single ? apply : inTransaction(sql.withTransaction, apply))
    }

    // --- single operations ------------------------------------------------------------------------------

    const claim = (key: ExecutionKey, owner: string, now: number, claimUntil: number) =>
      operation(
        "claim",
        Effect.gen(function*() {
          const rows = yield* sql<Row>`UPDATE ${E} SET status = 'running', suspended_on = NULL, wake_at = NULL,
  claim_owner = ${owner}, claim_epoch = claim_epoch + 1, claim_until = ${claimUntil}, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND status NOT IN ${terminal}
  AND (claim_owner IS NULL OR claim_owner = ${owner} OR (claim_until IS NOT NULL AND claim_until < ${now}))
RETURNING ${cols}`
          if (rows.length > 0) return { _tag: "Claimed", row: decodeExecution(rows[0]!) } satisfies ClaimResult
          const row = yield* selectRow(key)
          return { _tag: "Unavailable", row } satisfies ClaimResult
        })
      )

    const renew = (
      owner: string,
      claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>,
      claimUntil: number
    ): Effect.Effect<ReadonlyArray<ExecutionRow | undefined>, JournalError> =>
      claims.length === 0 ? Effect.succeed([]) : operation(
        "renew",
        Effect.map(
          sql<Row>`UPDATE ${E} AS x SET claim_until = ${claimUntil}
FROM ${source(renewSource, claims.map((c) => ({ w: c.key.workflow, e: c.key.executionId, epoch: c.epoch })))}
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = ${owner} AND x.claim_epoch = v.epoch
  AND x.status NOT IN ${terminal}
RETURNING ${cols}`,
          (rows) => {
            const byId = new Map(rows.map((r) => [rowKeyId(r), decodeExecution(r)]))
            return claims.map(({ epoch, key }) => {
              const row = byId.get(keyId(key.workflow, key.executionId))
              return row !== undefined && row.claimEpoch === epoch ? row : undefined
            })
          }
        )
      )

    const signal = (key: ExecutionKey, name: string, value: string, now: number) =>
      transaction(
        "signal",
        Effect.gen(function*() {
          // Lock the execution first (PostgreSQL), so concurrent signals bump the inbox one after the other.
          const current = yield* sql<Row>`SELECT ${cols} FROM ${E}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}${forUpdate}`
          if (current.length === 0) return undefined
          const row = decodeExecution(current[0]!)
          const inserted = yield* sql<Row>`INSERT INTO ${S} (workflow, execution_id, name, value, inbox_version,
  created_at)
VALUES (${key.workflow}, ${key.executionId}, ${name}, ${value}, ${row.inboxVersion + 1}, ${now})
ON CONFLICT DO NOTHING
RETURNING name`
          if (inserted.length === 0) {
            const stored = yield* sql<Row>`SELECT value FROM ${S}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND name = ${name}`
            return { stored: str(stored[0]?.value), row }
          }
          const rows = yield* sql<Row>`UPDATE ${E} SET inbox_version = inbox_version + 1, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}
RETURNING ${cols}`
          return { stored: value, row: decodeExecution(rows[0]!) }
        })
      )

    const updateOrRead = (name: string, key: ExecutionKey, update: Statement.Statement<Row>) =>
      operation(
        name,
        Effect.gen(function*() {
          const rows = yield* update
          return rows.length > 0 ? decodeExecution(rows[0]!) : yield* selectRow(key)
        })
      )

    const requestCancel = (key: ExecutionKey, now: number) =>
      updateOrRead(
        "requestCancel",
        key,
        sql<Row>`UPDATE ${E} SET cancel_requested = 1, inbox_version = inbox_version + 1, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND status NOT IN ${terminal}
RETURNING ${cols}`
      )

    const resume = (key: ExecutionKey, now: number) =>
      updateOrRead(
        "resume",
        key,
        sql<Row>`UPDATE ${E} SET status = 'running', suspended_on = NULL, wake_at = NULL,
  inbox_version = inbox_version + 1, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND status = 'suspended'
RETURNING ${cols}`
      )

    const nextWakeAt = (workflows: ReadonlyArray<string>) =>
      workflows.length === 0 ? Effect.succeed(undefined) : read(
        "nextWakeAt",
        Effect.map(
          sql<Row>`SELECT MIN(wake_at) AS wake_at FROM ${E}
WHERE status = 'suspended' AND wake_at IS NOT NULL AND ${inWorkflows(workflows)}`,
          (rows) => {
            const wakeAt = numOrNull(rows[0]?.wake_at)
            return wakeAt === null ? undefined : wakeAt
          }
        )
      )

    const toKeys = (rows: ReadonlyArray<Row>): Array<ExecutionKey> =>
      rows.map((r) => ({ workflow: str(r.workflow), executionId: str(r.execution_id) }))

    const dueTimers = (workflows: ReadonlyArray<string>, now: number, limit: number) =>
      workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
        "dueTimers",
        Effect.map(
          sql<Row>`SELECT workflow, execution_id FROM ${E}
WHERE status = 'suspended' AND wake_at IS NOT NULL AND wake_at <= ${now} AND ${inWorkflows(workflows)}
ORDER BY wake_at, workflow, execution_id
LIMIT ${limitOf(limit)}`,
          toKeys
        )
      )

    const resumable = (workflows: ReadonlyArray<string>, owner: string, now: number, limit: number) =>
      workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
        "resumable",
        Effect.map(
          sql<Row>`SELECT workflow, execution_id FROM ${E}
WHERE status = 'running' AND ${inWorkflows(workflows)}
  AND (claim_owner IS NULL OR claim_owner = ${owner} OR (claim_until IS NOT NULL AND claim_until < ${now}))
ORDER BY created_at, workflow, execution_id
LIMIT ${limitOf(limit)}`,
          toKeys
        )
      )

    const list = (options: ListOptions) =>
      options.workflows.length === 0 || options.limit <= 0 ? Effect.succeed([]) : read(
        "list",
        Effect.map(
          sql<Row>`SELECT ${cols} FROM ${E}
WHERE ${inWorkflows(options.workflows)}${
            options.status === undefined ? sql.literal("") : sql` AND status = ${options.status}`
          }${
            options.after === undefined
              ? sql.literal("")
              : sql` AND (workflow, execution_id) > (${options.after.workflow}, ${options.after.executionId})`
          }
ORDER BY workflow, execution_id
LIMIT ${limitOf(options.limit)}`,
          (rows) => rows.map(decodeExecution)
        )
      )

    const deleteChunk = 500
    const deleteCompleted = (before: number) =>
      Effect.gen(function*() {
        let total = 0
        while (true) {
          const deleted = yield* transaction(
            "deleteCompleted",
            Effect.gen(function*() {
              const keys = yield* sql<Row>`DELETE FROM ${E} WHERE (workflow, execution_id) IN (
  SELECT workflow, execution_id FROM ${E}
  WHERE completed_at IS NOT NULL AND completed_at < ${before} AND status IN ${terminal}
  LIMIT ${limitOf(deleteChunk)})
RETURNING workflow, execution_id`
              if (keys.length > 0) {
                const json = keys.map((r) => ({ w: str(r.workflow), e: str(r.execution_id) }))
                yield* sql`DELETE FROM ${V} WHERE (workflow, execution_id) IN (SELECT v.w, v.e FROM ${
                  source(keySource, json)
                })`
                yield* sql`DELETE FROM ${S} WHERE (workflow, execution_id) IN (SELECT v.w, v.e FROM ${
                  source(keySource, json)
                })`
              }
              return keys.length
            })
          )
          total += deleted
          if (deleted < deleteChunk) return total
        }
      })

    // SQLite: a BEGIN refused as busy (another process holds the write lock) surfaces at the transaction's
    // first statement (see node/Sqlite.ts). A no-op statement first makes it a retried busy transaction
    // before the user's effect runs, instead of a failure of the user's first statement (or of the
    // recorded result's commit, which then looks like a COMMIT of unknown outcome).
    const begun: Effect.Effect<void, SqlError> = dialect === "sqlite" ? Effect.asVoid(client`SELECT 1`) : Effect.void

    const journal: Journal = {
      commit,
      get: (key) => read("get", Effect.map(selectRow(key), Option.fromNullable)),
      events: (key, fromSequence) =>
        read(
          "events",
          Effect.map(
            sql<Row>`SELECT sequence, kind, step_kind, step_scope, step_id, attempt, body FROM ${V}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND sequence >= ${fromSequence}
ORDER BY sequence`,
            (rows) => rows.map(decodeEvent)
          )
        ),
      signals: (key) =>
        read(
          "signals",
          Effect.map(
            sql<Row>`SELECT name, value, created_at FROM ${S}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}
ORDER BY inbox_version, name`,
            (rows) => rows.map(decodeSignal)
          )
        ),
      claim,
      renew,
      signal,
      requestCancel,
      resume,
      nextWakeAt,
      dueTimers,
      resumable,
      list,
      deleteCompleted,
      sql: {
        client,
        withTransaction: <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | JournalError, R> =>
          Effect.mapError(
            retryLive(
              "withTransaction",
              inTransaction(
                client.withTransaction,
                Effect.zipRight(begun, Effect.mapError(effect, (error) => new UserFailure(error)))
              ),
              retries,
              // Busy at BEGIN (the user's effect did not run) is retried; the user's own failures are not.
              isBusyError
            ),
            (error) => error instanceof UserFailure ? error.error as E : toJournalError("withTransaction", error)
          )
      }
    }
    return journal
  })

/**
 * A layer with the SQL journal on the `SqlClient` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: SqlJournalOptions
): Layer.Layer<DurableExecutionJournal, JournalError, SqlClient.SqlClient> =>
  Layer.effect(DurableExecutionJournal, make(options))
