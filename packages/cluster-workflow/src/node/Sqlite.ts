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
 * Why not the stock `LibsqlClient.layer({ url })`: measured with `@libsql/client` 0.12 / libsql 0.4.7,
 *
 * - its local driver opens a fresh connection for the statements after each transaction and never closes
 *   the one the transaction used (about 175 KB of native memory per transaction, not reclaimed by the
 *   garbage collector), losing per-connection settings such as `synchronous` and `busy_timeout` with it;
 * - it prepares every statement anew, and libsql never frees a prepared statement (about 3.7 KB each);
 * - `@effect/sql-libsql` 0.42 leaks its transaction semaphore when `BEGIN` fails (`SQLITE_BUSY` from another
 *   process), after which every transaction of the process waits forever;
 * - a statement that failed with `SQLITE_BUSY` stays active, and every later COMMIT on that connection fails;
 * - `close()` frees the native connection only once the garbage collector has collected its prepared
 *   statements' objects: closed with a write transaction open (its fiber interrupted, or stopped for good), it keeps
 *   the file's write lock until then, and other connections get `SQLITE_BUSY` meanwhile.
 *
 * This client talks to libsql directly (rows, values and errors exactly as `@libsql/client` returns them),
 * on one connection with an LRU cache of prepared statements, runs transactions as `BEGIN IMMEDIATE` ...
 * `COMMIT` on it (`@effect/sql-libsql` already serialises a process's transactions), hands a failed `BEGIN`
 * out as a transaction whose first statement fails, replaces the connection after a busy error, and rolls
 * back a transaction left open when it closes. What
 * remains of libsql's leaks: under 1 KB per statement that returns rows (its row iterator), a few KB per
 * journal commit.
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
import Database from "libsql"
import type * as Scope from "effect/Scope"
import { readFileSync, readlinkSync } from "node:fs"
import { hostname } from "node:os"
import { resolve } from "node:path"
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

const transactionClosed = () => new Libsql.LibsqlError("The transaction is closed", "TRANSACTION_CLOSED")

const isBusy = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
}

/** libsql's errors as `@libsql/client` reports them (`code`, `rawCode`). */
const toLibsqlError = (error: unknown): unknown => {
  const e = error as { libsqlError?: unknown; message?: unknown; code?: unknown; rawCode?: unknown } | null
  return e !== null && typeof e === "object" && typeof e.code === "string" && typeof e.message === "string" &&
      !(error instanceof Libsql.LibsqlError)
    ? new Libsql.LibsqlError(e.message, e.code, typeof e.rawCode === "number" ? e.rawCode : undefined, error as Error)
    : error
}

const minSafe = BigInt(Number.MIN_SAFE_INTEGER)
const maxSafe = BigInt(Number.MAX_SAFE_INTEGER)

const valueFromSql = (value: unknown): unknown => {
  if (typeof value === "bigint") {
    if (value < minSafe || value > maxSafe) {
      throw new RangeError("Received integer which cannot be safely represented as a JavaScript number")
    }
    return Number(value)
  }
  if (value instanceof Uint8Array) {
    return value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength)
  }
  return value
}

const valueToSql = (value: unknown): unknown => {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new RangeError("Only finite numbers (not Infinity or NaN) can be passed as arguments")
  }
  if (typeof value === "boolean") return value ? 1 : 0
  if (value instanceof ArrayBuffer) return new Uint8Array(value)
  if (value instanceof Date) return value.valueOf()
  if (value === undefined) throw new TypeError("undefined cannot be passed as argument to the database")
  return value
}

const argsOf = (stmt: Libsql.InStatement): Array<unknown> | Record<string, unknown> => {
  if (typeof stmt === "string" || stmt.args === undefined) return []
  if (Array.isArray(stmt.args)) return stmt.args.map(valueToSql)
  const named: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(stmt.args)) {
    named[name[0] === "@" || name[0] === "$" || name[0] === ":" ? name.slice(1) : name] = valueToSql(value)
  }
  return named
}

/** A row as `@libsql/client` returns it: column names (enumerable) and indexes, with a `length`. */
const rowFromSql = (values: ReadonlyArray<unknown>, columns: ReadonlyArray<string>): Libsql.Row => {
  const row = {} as Record<string | number, unknown>
  Object.defineProperty(row, "length", { value: values.length })
  for (let i = 0; i < values.length; i++) {
    const value = valueFromSql(values[i])
    Object.defineProperty(row, i, { value })
    const column = columns[i]!
    if (!Object.hasOwn(row, column)) {
      Object.defineProperty(row, column, { value, enumerable: true, configurable: true, writable: true })
    }
  }
  return row as unknown as Libsql.Row
}

const resultSet = (
  columns: Array<string>,
  columnTypes: Array<string>,
  rows: Array<Libsql.Row>,
  rowsAffected: number,
  lastInsertRowid: bigint | undefined
): Libsql.ResultSet => ({
  columns,
  columnTypes,
  rows,
  rowsAffected,
  lastInsertRowid,
  toJSON: () => ({
    columns,
    columnTypes,
    rows: rows.map((row) => Array.from(row as unknown as ArrayLike<unknown>)),
    rowsAffected,
    lastInsertRowid: lastInsertRowid === undefined ? null : String(lastInsertRowid)
  })
})

interface Cached {
  readonly statement: Database.Statement
  readonly reader: boolean
  readonly columns: Array<string>
  readonly columnTypes: Array<string>
}

const statementCacheSize = 256

/**
 * One libsql connection executing statements the way `@libsql/client`'s local driver does (same rows,
 * same errors), but with prepared statements cached (LRU): libsql's native binding never frees a prepared
 * statement (about 3.7 KB per `prepare`), so preparing each execution, as `@libsql/client` does, grows the
 * process without bound.
 */
class Connection {
  private readonly cache = new Map<string, Cached>()
  constructor(readonly db: Database.Database) {}

  private prepare(sql: string): Cached {
    const hit = this.cache.get(sql)
    if (hit !== undefined) {
      this.cache.delete(sql)
      this.cache.set(sql, hit)
      return hit
    }
    const statement = this.db.prepare(sql)
    statement.safeIntegers(true)
    const reader = statement.reader
    let columns: Array<string> = []
    let columnTypes: Array<string> = []
    if (reader) {
      statement.raw(true)
      const definitions = statement.columns()
      columns = definitions.map((c) => c.name)
      columnTypes = definitions.map((c) => c.type ?? "")
    }
    const cached: Cached = { statement, reader, columns, columnTypes }
    this.cache.set(sql, cached)
    if (this.cache.size > statementCacheSize) this.cache.delete(this.cache.keys().next().value!)
    return cached
  }

  execute(stmt: Libsql.InStatement): Libsql.ResultSet {
    const sql = typeof stmt === "string" ? stmt : stmt.sql
    let cached: Cached | undefined
    try {
      cached = this.prepare(sql)
      const args = argsOf(stmt)
      if (cached.reader) {
        const raw = cached.statement.all(args) as Array<ReadonlyArray<unknown>>
        const columns = cached.columns
        return resultSet(columns, cached.columnTypes, raw.map((values) => rowFromSql(values, columns)), 0, undefined)
      }
      const info = cached.statement.run(args)
      return resultSet([], [], [], info.changes, BigInt(info.lastInsertRowid))
    } catch (error) {
      // A statement that failed may stay active (SQLITE_BUSY): never reuse it.
      this.cache.delete(sql)
      throw toLibsqlError(error)
    }
  }

  /**
   * Closes the connection, rolling back a transaction left open first (its fiber was interrupted, or its
   * process is being torn down): libsql closes the native connection only once the garbage collector has
   * collected its prepared statements' objects, and until then an open write transaction would keep the file's write
   * lock, and every other connection would get SQLITE_BUSY (for seconds, or as long as no GC runs).
   */
  close() {
    if (this.db.open && this.db.inTransaction) {
      try {
        this.db.exec("ROLLBACK")
      } catch {
        // the connection is closed below anyway
      }
    }
    this.cache.clear()
    if (this.db.open) this.db.close()
  }
}

/**
 * A `@libsql/client` `Client` on ONE libsql connection, whose transactions run on that connection instead
 * of taking it away (see the module documentation).
 *
 * libsql leaves a statement that failed with `SQLITE_BUSY` active on its connection, and SQLite then refuses
 * every later COMMIT on it ("cannot commit transaction - SQL statements in progress"). So after a busy error
 * the connection is replaced by a fresh one (with the same settings) before it is used again.
 */
const singleConnection = (
  first: Connection,
  reopen: (() => Connection) | undefined,
  register: (connection: Connection) => void
): Libsql.Client => {
  let connection = first
  let poisoned = false
  let inTransaction = false
  let closed = false
  const run = (stmt: Libsql.InStatement): Libsql.ResultSet => {
    if (closed) throw new Libsql.LibsqlError("The client is closed", "CLIENT_CLOSED")
    try {
      return connection.execute(stmt)
    } catch (error) {
      if (reopen !== undefined && isBusy(error)) poisoned = true
      throw error
    }
  }
  const refresh = () => {
    if (!poisoned || inTransaction || reopen === undefined || closed) return
    poisoned = false
    const old = connection
    connection = reopen()
    register(connection)
    old.close()
  }
  const execute = async (stmt: Libsql.InStatement) => {
    refresh()
    return run(stmt)
  }
  const sequence = (stmts: ReadonlyArray<Libsql.InStatement>, begin: string) => {
    refresh()
    run(begin)
    try {
      const results = stmts.map(run)
      run("COMMIT")
      return results
    } catch (error) {
      if (connection.db.inTransaction) connection.execute("ROLLBACK")
      throw error
    }
  }
  return {
    execute,
    batch: async (stmts, mode = "deferred") =>
      sequence(stmts, mode === "write" ? "BEGIN IMMEDIATE" : mode === "read" ? "BEGIN DEFERRED" : "BEGIN DEFERRED"),
    migrate: async (stmts) => sequence(stmts, "BEGIN DEFERRED"),
    executeMultiple: async (sql) => {
      refresh()
      try {
        connection.db.exec(sql)
      } catch (error) {
        throw toLibsqlError(error)
      }
    },
    sync: () => Promise.reject(new Libsql.LibsqlError("sync is not supported by this client", "NOT_SUPPORTED")),
    close: () => {
      closed = true
      connection.close()
    },
    get closed() {
      return closed
    },
    protocol: "file",
    transaction: async (mode: Libsql.TransactionMode = "write") => {
      refresh()
      // A failed BEGIN (SQLITE_BUSY: another process writes) must not reject here: `@effect/sql-libsql`
      // 0.42 leaks its transaction semaphore when beginning fails, which would wedge every later
      // transaction of the process. The transaction is handed out failed instead: its first statement (or
      // its COMMIT) fails with the BEGIN error, and the client's rollback path releases the semaphore.
      let beginError: { readonly error: unknown } | undefined
      try {
        run(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED")
        inTransaction = true
      } catch (error) {
        beginError = { error }
      }
      let open = beginError === undefined
      const finish = async (statement: "COMMIT" | "ROLLBACK") => {
        if (!open) return
        open = false
        try {
          run(statement)
        } catch (error) {
          // A COMMIT refused (e.g. SQLITE_BUSY) leaves the transaction open: roll it back, so the connection
          // is usable again and the outcome is "not committed".
          if (statement === "COMMIT" && connection.db.inTransaction) {
            try {
              connection.execute("ROLLBACK")
            } catch {
              // the connection is replaced on the next use
            }
          }
          throw error
        } finally {
          inTransaction = false
        }
      }
      const transaction: Libsql.Transaction = {
        execute: async (stmt) => {
          if (beginError !== undefined) throw beginError.error
          if (!open) throw transactionClosed()
          return run(stmt)
        },
        batch: async (stmts) => {
          const results: Array<Libsql.ResultSet> = []
          for (const stmt of stmts) {
            if (beginError !== undefined) throw beginError.error
            if (!open) throw transactionClosed()
            results.push(run(stmt))
          }
          return results
        },
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

const openConnection = (path: string, pragmas: ReadonlyArray<string>): Connection => {
  const connection = new Connection(new Database(path))
  try {
    for (const statement of pragmas) connection.execute(statement)
    return connection
  } catch (error) {
    connection.close()
    throw error
  }
}

/**
 * Opens the database file and returns a `@libsql/client` `Client` on one connection, with WAL,
 * `synchronous` and `busy_timeout` set and prepared statements cached. Closed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLibsqlClient = (options: SqliteOptions): Effect.Effect<Libsql.Client, SqlError, Scope.Scope> =>
  Effect.gen(function*() {
    const memory = options.filename === ":memory:"
    const path = memory ? ":memory:" : resolve(options.filename)
    const busyTimeout = Math.max(0, Math.round(Duration.toMillis(options.busyTimeout ?? Duration.millis(25))))
    const busy = `PRAGMA busy_timeout = ${busyTimeout}`
    const synchronous = `PRAGMA synchronous = ${options.synchronous === "FULL" ? "FULL" : "NORMAL"}`
    // The connection in use, closed with the scope (it changes when a busy connection is replaced).
    let current: Connection | undefined
    yield* Effect.addFinalizer(() => Effect.sync(() => current?.close()))
    current = yield* Effect.try({
      try: () => openConnection(path, memory ? [busy, synchronous] : [busy, "PRAGMA journal_mode = WAL", synchronous]),
      catch: (cause) => new SqlError({ cause: toLibsqlError(cause), message: `Failed to open ${options.filename}` })
    })
    return singleConnection(current, memory ? undefined : () => openConnection(path, [busy, synchronous]), (c) => {
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
): Layer.Layer<
  LibsqlClient.LibsqlClient | SqlClient.SqlClient | DurableExecutionJournalSql.ProcessLivenessService,
  SqlError
> =>
  Layer.merge(
    Layer.unwrapScoped(
      Effect.map(makeLibsqlClient(options), (liveClient) =>
        LibsqlClient.layer({
          liveClient,
          ...(options.transformQueryNames ? { transformQueryNames: options.transformQueryNames } : {}),
          ...(options.transformResultNames ? { transformResultNames: options.transformResultNames } : {})
        }))
    ),
    processLivenessLayer
  )

/**
 * A process's start time on Linux (`/proc/<pid>/stat`, field 22, in clock ticks since boot), or null
 * where there is no `/proc` or the process is gone.
 */
const processStartTime = (pid: number): string | null => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // the command name (field 2) is in parentheses and may contain spaces: count fields after it
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return fields[19] ?? null
  } catch {
    return null
  }
}

/** A Linux file's first line (the PID namespace link, the boot id), or undefined where there is none. */
const readLink = (read: () => string): string | undefined => {
  try {
    const value = read().trim()
    return value === "" || value.includes("#") ? undefined : value
  } catch {
    return undefined
  }
}

/**
 * Where a pid names a process: this machine's name and, where Linux tells them, its PID namespace
 * (`/proc/self/ns/pid`: a container has its own) and its kernel's boot id (`/proc/sys/kernel/random/boot_id`:
 * another kernel, or this one before a reboot). Stored as `name#pidns#bootid` (a host name has no `#`);
 * just the name where there is no `/proc` (macOS), as before.
 */
const machine = (() => {
  const name = hostname()
  const namespace = readLink(() => readlinkSync("/proc/self/ns/pid"))
  const boot = readLink(() => readFileSync("/proc/sys/kernel/random/boot_id", "utf8"))
  return namespace === undefined || boot === undefined ? name : `${name}#${namespace}#${boot}`
})()

/** A registered host: its name, and its PID namespace and boot id when it recorded them. */
const parseHost = (host: string) => {
  const [name, namespace, boot] = host.split("#")
  return { name: name!, namespace, boot }
}

/**
 * This Node process's liveness on its machine (host, pid, start time), and how to tell that another
 * process of this machine is gone: `process.kill(pid, 0)` fails with ESRCH, or the pid now belongs to a
 * process that started at another time. A SQLite journal uses it to resume a killed process's executions
 * at once (issue 9 #4). The host includes, on Linux, the PID namespace and boot id: a pid registered in
 * another PID namespace (a container sharing the host name and the SQLite file) or under another kernel
 * (another machine with the same name, or before a reboot) means nothing here, so such an engine's
 * liveness cannot be told (its claims end at their lease).
 *
 * @since 0.1.0
 * @category liveness
 */
export const processLiveness: DurableExecutionJournalSql.ProcessLiveness = {
  host: machine,
  pid: process.pid,
  startTime: processStartTime(process.pid),
  isAlive: (host, pid, startTime) => {
    const theirs = parseHost(host)
    const ours = parseHost(machine)
    if (theirs.name !== ours.name) return undefined
    // another PID namespace or another kernel: its pid is not one of this namespace's (a process that
    // recorded none, from an earlier release, is judged as before)
    if (theirs.namespace !== undefined && (theirs.namespace !== ours.namespace || theirs.boot !== ours.boot)) {
      return undefined
    }
    try {
      process.kill(pid, 0)
    } catch (error) {
      if ((error as { code?: string }).code === "ESRCH") return false
    }
    if (startTime === null) return true
    const current = processStartTime(pid)
    return current === null ? true : current === startTime
  }
}

/**
 * Provides `processLiveness` (part of `layerClient`).
 *
 * @since 0.1.0
 * @category layers
 */
export const processLivenessLayer: Layer.Layer<DurableExecutionJournalSql.ProcessLivenessService> = Layer.succeed(
  DurableExecutionJournalSql.ProcessLivenessService,
  processLiveness
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
  | DurableExecutionJournal
  | LibsqlClient.LibsqlClient
  | SqlClient.SqlClient
  | DurableExecutionJournalSql.ProcessLivenessService,
  SqlError | JournalError
> => Layer.provideMerge(DurableExecutionJournalSql.layer(options), layerClient(options))
