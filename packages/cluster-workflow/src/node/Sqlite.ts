/// <reference types="node" />
/**
 * SQLite on Node for the durable journal: `@effect-cluster/cluster-workflow/sqlite`.
 *
 * A subpath export, so the root entry stays free of the native driver. It builds an `@effect/sql-libsql`
 * client that keeps ONE connection to the database file, opened with the settings a journal wants:
 *
 * - `journal_mode=WAL`: readers do not block the writer; a commit appends to the log instead of rewriting
 *   pages (a persistent property of the file).
 * - `synchronous=NORMAL` (default; `synchronous: "FULL"` to change): in WAL mode a commit is not flushed to
 *   disk on its own; the log is flushed at checkpoints. The database never corrupts, and a process crash
 *   (`kill -9`) loses nothing, but a power cut or OS crash can lose the last commits before the
 *   checkpoint. `FULL` flushes every commit (several times slower on most disks).
 * - `busy_timeout` (default 25 ms): another process holding the write lock is waited for this long (the
 *   local driver is synchronous: the wait blocks the event loop, so keep it short), then the journal retries
 *   with backoff on the live clock and finally fails with a retryable `JournalError`.
 *
 * Why not the stock `LibsqlClient.layer({ url })`: `@libsql/client`'s local driver opens a fresh connection
 * for the statements after each transaction and never closes the connection the transaction used (about
 * 175 KB of native memory per transaction, which the garbage collector does not reclaim), and per-connection
 * settings such as `synchronous` and `busy_timeout` are lost with it. This client runs transactions as
 * `BEGIN IMMEDIATE` ... `COMMIT` on its one connection; `@effect/sql-libsql` already serialises a process's
 * transactions.
 *
 * @since 0.1.0
 */
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Libsql from "@libsql/client"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import type { DurableExecutionJournal, JournalError } from "../DurableExecutionJournal.js"
import * as DurableExecutionJournalSql from "../DurableExecutionJournalSql.js"

/**
 * Options of the SQLite client.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqliteOptions {
  /** Path of the database file (created if missing), or `":memory:"` for a private in-memory database. */
  readonly filename: string
  /** `PRAGMA synchronous`: `"NORMAL"` (default) or `"FULL"`. See the module documentation. */
  readonly synchronous?: "NORMAL" | "FULL" | undefined
  /** `PRAGMA busy_timeout`. Default: 25 millis. */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** Passed to `@effect/sql-libsql` (the journal itself always works without transforms). */
  readonly transformQueryNames?: ((str: string) => string) | undefined
  /** Passed to `@effect/sql-libsql` (the journal itself always works without transforms). */
  readonly transformResultNames?: ((str: string) => string) | undefined
}

const toUrl = (filename: string): string =>
  filename === ":memory:" ? ":memory:" : pathToFileURL(resolve(filename)).href

const transactionClosed = () => new Libsql.LibsqlError("The transaction is closed", "TRANSACTION_CLOSED")

const isBusy = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
}

/**
 * A local `@libsql/client` whose transactions run on its single connection instead of taking the connection
 * away (see the module documentation).
 *
 * libsql leaves a statement that failed with `SQLITE_BUSY` active on its connection, and SQLite then refuses
 * every later COMMIT on it ("cannot commit transaction - SQL statements in progress"). So after a busy error
 * the connection is replaced by a fresh one (with the same settings) before it is used again.
 */
const singleConnection = (
  first: Libsql.Client,
  reopen: (() => Promise<Libsql.Client>) | undefined,
  register: (client: Libsql.Client) => void
): Libsql.Client => {
  let inner = first
  let poisoned = false
  let inTransaction = false
  const run = (stmt: Libsql.InStatement): Promise<Libsql.ResultSet> =>
    inner.execute(stmt).catch((error) => {
      if (reopen !== undefined && isBusy(error)) poisoned = true
      throw error
    })
  const refresh = async () => {
    if (!poisoned || inTransaction || reopen === undefined) return
    poisoned = false
    const old = inner
    inner = await reopen()
    register(inner)
    old.close()
  }
  const execute = async (stmt: Libsql.InStatement) => {
    await refresh()
    return run(stmt)
  }
  return {
    execute,
    batch: async (stmts, mode) => {
      await refresh()
      return inner.batch(stmts, mode)
    },
    migrate: async (stmts) => {
      await refresh()
      return inner.migrate(stmts)
    },
    executeMultiple: async (sql) => {
      await refresh()
      return inner.executeMultiple(sql)
    },
    sync: () => inner.sync(),
    close: () => inner.close(),
    get closed() {
      return inner.closed
    },
    protocol: first.protocol,
    transaction: async (mode: Libsql.TransactionMode = "write") => {
      await refresh()
      // A failed BEGIN (SQLITE_BUSY: another process writes) must not reject here: `@effect/sql-libsql`
      // 0.42 leaks its transaction semaphore when beginning fails, which would wedge every later
      // transaction of the process. The transaction is handed out failed instead: its first statement (or
      // its COMMIT) fails with the BEGIN error, and the client's rollback path releases the semaphore.
      let beginError: { readonly error: unknown } | undefined
      try {
        await run(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED")
        inTransaction = true
      } catch (error) {
        beginError = { error }
      }
      let open = beginError === undefined
      const finish = async (statement: "COMMIT" | "ROLLBACK") => {
        if (!open) return
        open = false
        try {
          await run(statement)
        } catch (error) {
          // A COMMIT refused (e.g. SQLITE_BUSY) leaves the transaction open: roll it back, so the connection
          // is usable again and the outcome is "not committed".
          if (statement === "COMMIT") await inner.execute("ROLLBACK").catch(() => undefined)
          throw error
        } finally {
          inTransaction = false
        }
      }
      const transaction: Libsql.Transaction = {
        execute: (stmt) =>
          beginError !== undefined
            ? Promise.reject(beginError.error)
            : open
            ? run(stmt)
            : Promise.reject(transactionClosed()),
        batch: async (stmts) => {
          const results: Array<Libsql.ResultSet> = []
          for (const stmt of stmts) {
            if (beginError !== undefined) throw beginError.error
            if (!open) throw transactionClosed()
            results.push(await run(stmt))
          }
          return results
        },
        // `@libsql/client`'s executeMultiple rolls back an open transaction when it ends: not available here.
        executeMultiple: () =>
          Promise.reject(new Libsql.LibsqlError("executeMultiple in a transaction", "NOT_SUPPORTED")),
        commit: () => beginError !== undefined ? Promise.reject(beginError.error) : finish("COMMIT"),
        rollback: () => finish("ROLLBACK"),
        close: () => {
          void finish("ROLLBACK").catch(() => undefined)
        },
        get closed() {
          return !open
        }
      }
      return transaction
    }
  }
}

const openConnection = async (url: string, pragmas: ReadonlyArray<string>): Promise<Libsql.Client> => {
  const client = Libsql.createClient({ url })
  try {
    for (const statement of pragmas) await client.execute(statement)
    return client
  } catch (error) {
    client.close()
    throw error
  }
}

/**
 * Opens the database file and returns a `@libsql/client` `Client` that keeps one connection, with WAL,
 * `synchronous` and `busy_timeout` set. Closed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLibsqlClient = (options: SqliteOptions): Effect.Effect<Libsql.Client, SqlError, Scope.Scope> =>
  Effect.gen(function*() {
    const url = toUrl(options.filename)
    const memory = options.filename === ":memory:"
    const busyTimeout = Math.max(0, Math.round(Duration.toMillis(options.busyTimeout ?? Duration.millis(25))))
    const busy = `PRAGMA busy_timeout = ${busyTimeout}`
    const synchronous = `PRAGMA synchronous = ${options.synchronous === "FULL" ? "FULL" : "NORMAL"}`
    // The connection in use, closed with the scope (it changes when a busy connection is replaced).
    let current: Libsql.Client | undefined
    yield* Effect.addFinalizer(() => Effect.sync(() => current?.close()))
    current = yield* Effect.tryPromise({
      try: () => openConnection(url, memory ? [busy, synchronous] : [busy, "PRAGMA journal_mode = WAL", synchronous]),
      catch: (cause) => new SqlError({ cause, message: `Failed to open ${options.filename}` })
    })
    return singleConnection(current, memory ? undefined : () => openConnection(url, [busy, synchronous]), (c) => {
      current = c
    })
  })

/**
 * A `LibsqlClient` (also provided as `SqlClient`) on one connection to a SQLite file, set up for the
 * journal (see the module documentation).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (
  options: SqliteOptions
): Layer.Layer<LibsqlClient.LibsqlClient | SqlClient.SqlClient, SqlError> =>
  Layer.unwrapScoped(
    Effect.map(makeLibsqlClient(options), (liveClient) =>
      LibsqlClient.layer({
        liveClient,
        ...(options.transformQueryNames ? { transformQueryNames: options.transformQueryNames } : {}),
        ...(options.transformResultNames ? { transformResultNames: options.transformResultNames } : {})
      }))
  )

/**
 * The SQL journal on a SQLite file: `DurableExecutionJournal` plus the `SqlClient` it writes through (for
 * transactional activities and the user's own tables).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: SqliteOptions & DurableExecutionJournalSql.SqlJournalOptions
): Layer.Layer<
  DurableExecutionJournal | LibsqlClient.LibsqlClient | SqlClient.SqlClient,
  SqlError | JournalError
> => Layer.provideMerge(DurableExecutionJournalSql.layer(options), layerClient(options))
