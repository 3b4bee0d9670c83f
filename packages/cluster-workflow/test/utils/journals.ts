/**
 * The journals every journal-backed test runs against, as parameterised layers: in-memory, a SQLite file in
 * a temporary directory, and PostgreSQL (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test).
 *
 * Each build of a case's layer is a fresh, empty journal (a new in-memory store, a new SQLite file, a new
 * table prefix on PostgreSQL whose tables are dropped when the layer is released), so tests can provide the
 * layer per test without interfering, also across test files running in parallel.
 *
 * PostgreSQL cases are skipped, with a line saying so, only when the server is unreachable and
 * `REQUIRE_POSTGRES` is unset; with `REQUIRE_POSTGRES` set an unreachable server fails the test file.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "vitest"
import type {
  EventRow,
  ExecutionKey,
  Fence,
  JournalError,
  JournalWrite,
  RowUpdate
} from "../../src/DurableExecutionJournal.js"
import { DurableExecutionJournal } from "../../src/DurableExecutionJournal.js"
import * as DurableExecutionJournalInMemory from "../../src/DurableExecutionJournalInMemory.js"
import * as DurableExecutionJournalSql from "../../src/DurableExecutionJournalSql.js"
import * as Sqlite from "../../src/node/Sqlite.js"

/** The PostgreSQL server the tests use. */
export const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"

/** Whether PostgreSQL tests must run (CI sets it). */
export const requirePostgres = process.env.REQUIRE_POSTGRES !== undefined && process.env.REQUIRE_POSTGRES !== ""

let counter = 0
/** A table prefix no other test (file, process or run) uses. */
export const uniquePrefix = (tag = "t"): string =>
  `wft_${tag}_${process.pid.toString(36)}_${Date.now().toString(36)}_${(counter++).toString(36)}_${
    Math.floor(Math.random() * 36 ** 4).toString(36)
  }`

/** A PostgreSQL client (`PgClient` and `SqlClient`) on `DATABASE_URL`. */
export const pgClientLayer = (
  options?: { readonly maxConnections?: number | undefined }
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError> =>
  PgClient.layer({
    url: Redacted.make(databaseUrl),
    connectTimeout: "3 seconds",
    ...(options?.maxConnections !== undefined ? { maxConnections: options.maxConnections } : {})
  })

const probePostgres = (): Promise<string | undefined> =>
  Effect.runPromise(
    Layer.build(pgClientLayer({ maxConnections: 1 })).pipe(
      Effect.scoped,
      Effect.timeout("4 seconds"),
      Effect.match({ onFailure: (error) => String(error), onSuccess: () => undefined })
    )
  )

/** Why the PostgreSQL cases are skipped, or undefined when they run. */
export const postgresSkipReason: string | undefined = await (async () => {
  const failure = await probePostgres()
  if (failure === undefined) return undefined
  if (requirePostgres) {
    throw new Error(`REQUIRE_POSTGRES is set but PostgreSQL at ${databaseUrl} is unreachable: ${failure}`)
  }
  const reason = `PostgreSQL at ${databaseUrl} is unreachable (${failure}); set REQUIRE_POSTGRES=1 to fail instead`
  console.warn(`[journals] skipping the PostgreSQL journal cases: ${reason}`)
  return reason
})()

/** Drops the tables of a journal prefix (test clean-up). */
export const dropTables = (prefix: string): Effect.Effect<void, SqlError | JournalError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const t = yield* DurableExecutionJournalSql.tableNames(prefix)
    for (const table of [t.events, t.signals, t.executions, t.migrations]) {
      yield* sql`DROP TABLE IF EXISTS ${sql(table)}`
    }
  })

/** A temporary directory, removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "wf-journal-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A SQLite client (one connection, WAL) on a new file in a temporary directory. */
export const sqliteClientLayer = (
  options?: Partial<Sqlite.SqliteOptions>
): Layer.Layer<SqlClient.SqlClient, SqlError> =>
  Layer.unwrapScoped(
    Effect.map(tempDir, (dir) => Sqlite.layerClient({ ...options, filename: join(dir, "journal.db") }))
  )

/** A fresh in-memory journal. */
export const memoryJournal: Layer.Layer<DurableExecutionJournal> = DurableExecutionJournalInMemory.layer

/** A fresh SQL journal (new prefix, tables dropped on release) on the `SqlClient` in context. */
export const sqlJournalOn = (
  options?: DurableExecutionJournalSql.SqlJournalOptions
): Layer.Layer<DurableExecutionJournal, SqlError | JournalError, SqlClient.SqlClient> =>
  Layer.scoped(
    DurableExecutionJournal,
    Effect.gen(function*() {
      const prefix = options?.prefix ?? uniquePrefix()
      yield* Effect.addFinalizer(() => Effect.orDie(dropTables(prefix)).pipe(Effect.catchAllDefect(() => Effect.void)))
      return yield* DurableExecutionJournalSql.make({ ...options, prefix })
    })
  )

/** A fresh journal on a new SQLite file, with its `SqlClient`. */
export const sqliteJournal = (
  options?: DurableExecutionJournalSql.SqlJournalOptions
): Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient, SqlError | JournalError> =>
  Layer.provideMerge(sqlJournalOn(options), sqliteClientLayer())

/** A fresh journal (new table prefix, dropped on release) on PostgreSQL, with its `SqlClient`. */
export const postgresJournal = (
  options?: DurableExecutionJournalSql.SqlJournalOptions
): Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient, SqlError | JournalError> =>
  Layer.provideMerge(sqlJournalOn(options), pgClientLayer())

/**
 * A fresh database for tests with several engines (or processes) on one journal: every `journal()` is an
 * independent journal layer (its own client: a SQLite connection, a PostgreSQL pool) on the same tables.
 * The database (SQLite file / PostgreSQL tables) is removed when the scope closes.
 */
export interface SharedDatabase {
  /** SQLite: the database file; PostgreSQL: `DATABASE_URL`. */
  readonly location: string
  readonly prefix: string
  readonly journal: (
    options?: Omit<DurableExecutionJournalSql.SqlJournalOptions, "prefix">
  ) => Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient>
}

/** A fresh SQLite database file shared by several journals. */
export const sharedSqlite: Effect.Effect<SharedDatabase, never, Scope.Scope> = Effect.map(tempDir, (dir) => {
  const filename = join(dir, "shared.db")
  const prefix = uniquePrefix("shared")
  return {
    location: filename,
    prefix,
    journal: (options) =>
      Layer.orDie(
        Layer.provideMerge(
          DurableExecutionJournalSql.layer({ ...options, prefix }),
          Sqlite.layerClient({ filename })
        )
      )
  }
})

/** A fresh table prefix on PostgreSQL shared by several journals; its tables are dropped with the scope. */
export const sharedPostgres: Effect.Effect<SharedDatabase, never, Scope.Scope> = Effect.gen(function*() {
  const prefix = uniquePrefix("shared")
  yield* Effect.addFinalizer(() =>
    Effect.ignore(Effect.provide(dropTables(prefix), pgClientLayer({ maxConnections: 1 })))
  )
  return {
    location: databaseUrl,
    prefix,
    journal: (options) =>
      Layer.orDie(Layer.provideMerge(DurableExecutionJournalSql.layer({ ...options, prefix }), pgClientLayer()))
  }
})

/** One journal of the parameterised suites. */
export interface JournalCase {
  readonly name: "memory" | "sqlite" | "postgres"
  /** A fresh journal per build; SQL cases also provide their `SqlClient` (see `sqlLayer`). */
  readonly layer: Layer.Layer<DurableExecutionJournal>
  /** SQL cases: the same fresh journal together with the `SqlClient` it writes through. */
  readonly sqlLayer: Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient> | undefined
  /** SQL cases: a fresh database for several journals (engines) at once. */
  readonly shared: Effect.Effect<SharedDatabase, never, Scope.Scope> | undefined
  /** Why the case is skipped (PostgreSQL unreachable and not required), or undefined. */
  readonly skip: string | undefined
}

/** The three journals: in-memory, SQLite file, PostgreSQL. */
export const journalCases: ReadonlyArray<JournalCase> = [
  { name: "memory", layer: memoryJournal, sqlLayer: undefined, shared: undefined, skip: undefined },
  {
    name: "sqlite",
    layer: Layer.orDie(sqliteJournal()),
    sqlLayer: Layer.orDie(sqliteJournal()),
    shared: sharedSqlite,
    skip: undefined
  },
  {
    name: "postgres",
    layer: Layer.orDie(postgresJournal()),
    sqlLayer: Layer.orDie(postgresJournal()),
    shared: sharedPostgres,
    skip: postgresSkipReason
  }
]

/** The SQL journals only. */
export const sqlJournalCases: ReadonlyArray<JournalCase> = journalCases.filter((c) => c.sqlLayer !== undefined)

/**
 * Registers `describe(`${name} [${journal}]`)` once per journal case, skipping (with the reason in the
 * title) only the PostgreSQL case when its server is unreachable and not required.
 */
export const describeJournals = (
  name: string,
  body: (journal: JournalCase) => void,
  cases: ReadonlyArray<JournalCase> = journalCases
): void => {
  for (const journal of cases) {
    if (journal.skip !== undefined) {
      describe.skip(`${name} [${journal.name}] (skipped: ${journal.skip})`, () => body(journal))
    } else {
      describe(`${name} [${journal.name}]`, () => body(journal))
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Builders of rows and writes for journal tests
// ---------------------------------------------------------------------------------------------------------

export const key = (executionId: string, workflow = "wf"): ExecutionKey => ({ workflow, executionId })

export const start = (
  k: ExecutionKey,
  options?: Partial<Omit<Extract<JournalWrite, { _tag: "Start" }>, "_tag" | "key">>
): JournalWrite => ({
  _tag: "Start",
  key: k,
  payload: JSON.stringify({ _tag: k.workflow, id: k.executionId }),
  payloadHash: `hash-${k.executionId}`,
  version: "v1",
  parent: null,
  owner: "A",
  claimUntil: 10_000,
  now: 100,
  ...options
})

export const event = (sequence: number, options?: Partial<EventRow>): EventRow => ({
  sequence,
  kind: "ActivityCompleted",
  stepKind: "activity",
  stepScope: "",
  stepId: `step-${sequence}`,
  attempt: 0,
  body: JSON.stringify({ value: sequence }),
  ...options
})

export const fence = (owner = "A", epoch = 1): Fence => ({ owner, epoch })

export const append = (
  k: ExecutionKey,
  f: Fence,
  events: ReadonlyArray<EventRow>,
  update?: RowUpdate,
  now = 200
): JournalWrite => ({ _tag: "Append", key: k, fence: f, events, update, now })

export const suspend = (
  k: ExecutionKey,
  f: Fence,
  inboxVersion: number,
  options?: { readonly suspendedOn?: string; readonly wakeAt?: number | null; readonly now?: number }
): JournalWrite => ({
  _tag: "Suspend",
  key: k,
  fence: f,
  inboxVersion,
  suspendedOn: options?.suspendedOn ?? "timer",
  wakeAt: options?.wakeAt === undefined ? 5_000 : options.wakeAt,
  now: options?.now ?? 300
})
