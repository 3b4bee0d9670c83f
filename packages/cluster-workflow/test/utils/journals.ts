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
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "vitest"
import type {
  EngineRegistration,
  EventRow,
  Journal,
  ExecutionKey,
  Fence,
  JournalWrite,
  RowUpdate
} from "../../src/DurableExecutionJournal.js"
import { DurableExecutionJournal, JournalError } from "../../src/DurableExecutionJournal.js"
import * as DurableExecutionJournalInMemory from "../../src/DurableExecutionJournalInMemory.js"
import * as DurableExecutionJournalSql from "../../src/DurableExecutionJournalSql.js"
import * as Sqlite from "../../src/node/Sqlite.js"
import { ioTurn } from "./engine.js"

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
    // The client's connect timeout runs on the Effect clock: under TestClock a test that advances time
    // while a connection opens would trip it. Reachability is checked once, on the live clock, below.
    connectTimeout: "20 days",
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
    for (const table of [t.events, t.signals, t.executions, t.engines, t.migrations]) {
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

/**
 * The SQL journal's `clock` for the journals built here, unless a test gives one: `"test"` in a test on a
 * TestClock (`it.effect`, `it.scoped` and `it.layer` provide the `TestClock` service), so that
 * `TestClock.adjust` drives claim expiry; the users' default `"database"` in a test on the live clock
 * (`it.live`, `it.scopedLive`), so that those tests run the journal as deployments do.
 */
export const testJournalClock: Effect.Effect<"database" | "test"> = Effect.map(
  Effect.serviceOption(TestClock.TestClock),
  (testClock) => Option.isSome(testClock) ? "test" : "database"
)

/** A SQL journal layer on the `SqlClient` in context, on `testJournalClock` unless `options` give a clock. */
export const sqlJournalLayer = (
  options: DurableExecutionJournalSql.SqlJournalOptions
): Layer.Layer<DurableExecutionJournal, JournalError, SqlClient.SqlClient> =>
  Layer.unwrapEffect(
    Effect.map(testJournalClock, (clock) => DurableExecutionJournalSql.layer({ ...options, clock: options.clock ?? clock }))
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
      const clock = options?.clock ?? (yield* testJournalClock)
      return yield* DurableExecutionJournalSql.make({ ...options, clock, prefix })
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
        Layer.provideMerge(sqlJournalLayer({ ...options, prefix }), Sqlite.layerClient({ filename }))
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
      Layer.orDie(Layer.provideMerge(sqlJournalLayer({ ...options, prefix }), pgClientLayer()))
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
    // An unreachable PostgreSQL (REQUIRE_POSTGRES unset) was reported once when the cases were built.
    if (journal.skip !== undefined) continue
    describe(`${name} [${journal.name}]`, () => body(journal))
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

/**
 * Commits the Start of `key` (`start`'s payload, which no test message has) claimed by `owner` for an hour
 * (live clock): an execution already there, run by another engine or left by one of `owner`'s that crashed.
 */
export const startedBy = (journal: Journal, k: ExecutionKey, owner: string) =>
  journal.commit([start(k, { owner, claimUntil: Date.now() + 3_600_000, now: Date.now() })])

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

/** A journal on its own connection, and how to kill that connection as a process death would. */
export interface JournalConnection {
  readonly journal: Journal
  /** Ends the connection the way a dead process's ends: its open transaction rolls back, its locks go. */
  readonly kill: Effect.Effect<void>
}

/**
 * Builds a case's journal in the current scope and returns the driver (for tests that wrap or share it).
 * SQL journals also carry `open`: another connection to the same database, so a simulated crash can
 * abandon one "process" (its connection, with whatever its frozen fibers hold) and the next run use a
 * new one, as a restarted process would.
 */
export const freshJournal = (
  journal: JournalCase
): Effect.Effect<Journal & { readonly open?: Effect.Effect<JournalConnection, never, Scope.Scope> }, never, Scope.Scope> =>
  Effect.gen(function*() {
    if (journal.shared === undefined) {
      return Context.get(yield* Layer.build(journal.layer), DurableExecutionJournal)
    }
    const database = yield* journal.shared
    const main = Context.get(yield* Layer.build(database.journal()), DurableExecutionJournal)
    let connections = 0
    const killedProcesses = new Set<string>()
    const open: Effect.Effect<JournalConnection, never, Scope.Scope> = Effect.gen(function*() {
      const scope = yield* Scope.make()
      // A run that was not killed closes its connection with the caller's scope (a killed one: see `kill`).
      let killed = false
      yield* Effect.addFinalizer(() => killed ? Effect.void : Scope.close(scope, Exit.void))
      const applicationName = `${database.prefix}_${connections++}`
      // On SQLite each simulated process gets an identity of its own for the engines' liveness check (they all
      // share this test's pid): it is alive until its run is killed, as a real process would be.
      const client = journal.name === "postgres"
        ? PgClient.layer({ url: Redacted.make(databaseUrl), connectTimeout: "20 days", applicationName })
        : Layer.merge(
          Sqlite.layerClient({ filename: database.location }),
          Layer.succeed(DurableExecutionJournalSql.ProcessLivenessService, {
            ...Sqlite.processLiveness,
            startTime: applicationName,
            isAlive: (host, pid, startTime) =>
              startTime !== null && startTime.startsWith(`${database.prefix}_`)
                ? !killedProcesses.has(startTime)
                : Sqlite.processLiveness.isAlive(host, pid, startTime)
          })
        )
      // just after a simulated crash closed the dead run's SQLite connection mid-transaction, the file
      // can answer SQLITE_BUSY to the new connection's start-up for a moment: retry on I/O turns
      const build = Layer.buildWithScope(
        Layer.provideMerge(sqlJournalLayer({ prefix: database.prefix }), client),
        scope
      )
      const retrying = (attempt: number): typeof build =>
        Effect.catchAll(build, (error) =>
          attempt < 500 && (error as { retryable?: boolean }).retryable !== false
            ? Effect.zipRight(ioTurn, retrying(attempt + 1))
            : Effect.fail(error))
      const context = yield* Effect.orDie(retrying(0))
      const kill = journal.name === "postgres"
        ? Effect.gen(function*() {
          killed = true
          yield* Effect.provide(
            Effect.flatMap(SqlClient.SqlClient, (main) =>
              main`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${applicationName}`),
            pgClientLayer({ maxConnections: 1 })
          ).pipe(Effect.orDie)
          // the pool may wait for clients its frozen fibers hold: let it go in the background
          yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
        })
        : Effect.zipRight(Effect.sync(() => {
          killed = true
          killedProcesses.add(applicationName)
        }), Scope.close(scope, Exit.void))
      return { journal: Context.get(context, DurableExecutionJournal), kill }
    })
    return Object.assign({ ...main }, { open })
  })

const liveClock = Clock.make()

/**
 * `inner` whose claims are refused (a non-retryable `JournalError`; reads keep working) `refusals` times
 * once `refuse()` has been called, then work again. `attempts` holds the live-clock instants of the
 * refused claims, and with `recordAfter` also those of every claim after them.
 */
export const refusingClaims = (
  inner: Journal,
  options: { readonly refusals: number; readonly recordAfter: boolean }
) => {
  const attempts: Array<number> = []
  let refusing = false
  let refused = 0
  const journal: Journal = {
    ...inner,
    claim: (...args) =>
      Effect.suspend(() => {
        if (!refusing) return inner.claim(...args)
        if (refused >= options.refusals) {
          if (options.recordAfter) attempts.push(liveClock.unsafeCurrentTimeMillis())
          return inner.claim(...args)
        }
        attempts.push(liveClock.unsafeCurrentTimeMillis())
        refused++
        return Effect.fail(new JournalError({ operation: "claim", message: "refused", retryable: false }))
      })
  }
  return { journal, attempts, refuse: () => void (refusing = true) }
}

/**
 * `inner` whose next `n` claims of executions of `workflow` fail, after `failNext(n)`, with a
 * `JournalError` (operation `"claim"`) of the given message and retryability; other claims pass through.
 */
export const failingClaimsOf = (
  inner: Journal,
  workflow: string,
  error: { readonly message: string; readonly retryable: boolean }
) => {
  let remaining = 0
  const journal: Journal = {
    ...inner,
    claim: (key, ...rest) =>
      Effect.suspend(() => {
        if (key.workflow === workflow && remaining > 0) {
          remaining--
          return Effect.fail(new JournalError({ operation: "claim", ...error }))
        }
        return inner.claim(key, ...rest)
      })
  }
  return { journal, failNext: (n: number) => void (remaining = n) }
}

/**
 * `inner` whose `registerEngine` answers what `wrap` makes of each registration: `call` counts the calls
 * from 0 (an engine registers again after a loss). `inner` itself when it has no `registerEngine`.
 */
export const wrappingRegistrations = (
  inner: Journal,
  wrap: (registration: EngineRegistration, call: number) => Effect.Effect<EngineRegistration>
): Journal => {
  const registerEngine = inner.registerEngine
  if (registerEngine === undefined) return inner
  let calls = 0
  return {
    ...inner,
    registerEngine: (owner, workflows) =>
      Effect.suspend(() => {
        const call = calls++
        return Effect.flatMap(registerEngine(owner, workflows), (registration) => wrap(registration, call))
      })
  }
}
