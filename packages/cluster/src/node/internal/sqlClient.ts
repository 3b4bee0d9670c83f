/// <reference types="node" />
/**
 * The SQL client of a database URL (PostgreSQL, or a SQLite file through `@effect/sql-libsql`), with the
 * drivers loaded only for the database in use. A SQLite client puts the file in WAL mode and waits for another
 * connection's write lock (`PRAGMA busy_timeout`) instead of failing at once.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { StorageException } from "../../Storage.js"

/** A database URL: PostgreSQL for `postgres://` and `postgresql://`, a SQLite file for `file:` URLs and paths. */
export type Database =
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string> }
  | { readonly _tag: "Sqlite"; readonly url: string }

/** Reads a database URL; the error names only the scheme (the rest of a URL may hold a password). */
export const parseDatabaseUrl = (url: string): { readonly database: Database } | { readonly error: string } => {
  if (/^postgres(ql)?:\/\//i.test(url)) return { database: { _tag: "Postgres", url: Redacted.make(url) } }
  if (/^file:/i.test(url)) return { database: { _tag: "Sqlite", url } }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)
  if (scheme !== null) return { error: `unsupported database URL scheme ${scheme[1]}:// (use postgres:// or a file)` }
  if (url.trim() === "") return { error: "the database URL is empty" }
  return { database: { _tag: "Sqlite", url: `file:${url}` } }
}

/** The default `busyTimeout` of a SQLite client. */
export const defaultBusyTimeout: Duration.Duration = Duration.seconds(1)

type RawClient = import("@effect/sql-libsql/LibsqlClient").LibsqlClientConfig.Live["liveClient"]
type RawTransaction = Awaited<ReturnType<RawClient["transaction"]>>

// A transaction whose BEGIN failed: handed out as one whose statements fail, because `@effect/sql-libsql`
// 0.42 keeps its transaction semaphore for ever when BEGIN itself rejects (every later transaction of the
// process would wait); its rollback does nothing, which releases the semaphore.
const failedTransaction = (cause: unknown): RawTransaction => {
  const fail = () => Promise.reject(cause)
  return {
    execute: fail,
    batch: fail,
    executeMultiple: fail,
    commit: fail,
    rollback: () => Promise.resolve(),
    close: () => undefined,
    closed: true
  } as unknown as RawTransaction
}

const isBusy = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
}

/**
 * `@libsql/client`'s local driver runs a transaction on the connection it has and opens a new one, lazily,
 * for the statements after it, which loses per-connection settings: the busy timeout is set (one PRAGMA)
 * before the first statement or BEGIN on each connection, in the same synchronous step as it (the local
 * driver runs a statement before its promise settles, so nothing of this process runs between the two).
 * A statement that failed with `SQLITE_BUSY` stays active on its connection, and SQLite then refuses every
 * later COMMIT there ("SQL statements in progress"): after a busy error the connection is given up (moved
 * into a deferred transaction, which takes no lock, and rolled back), so the next statement opens a fresh
 * one, and sets the busy timeout again.
 */
export const withBusyTimeout = (raw: RawClient, millis: number): RawClient => {
  const pragma = `PRAGMA busy_timeout = ${millis}`
  // whether the driver's current connection has the busy timeout (a new client's first one has not)
  let connectionSet = false
  const setOnce = (): Promise<unknown> => {
    if (connectionSet) return Promise.resolve()
    connectionSet = true
    return raw.execute(pragma).catch((error) => {
      connectionSet = false
      throw error
    })
  }
  // (a transaction takes the driver's connection: the next statement opens a new one; a BEGIN that failed
  // left it in place, and the PRAGMA sent again there is harmless)
  const begin = (mode: "write" | "read" | "deferred") => {
    const begun = raw.transaction(mode)
    connectionSet = false
    return begun
  }
  const discard = () => begin("deferred").then((transaction) => transaction.close(), () => undefined)
  const giveUpOnBusy = (error: unknown): Promise<never> =>
    isBusy(error) ? discard().then(() => Promise.reject(error)) : Promise.reject(error)
  return new Proxy(raw, {
    get(target, property, receiver) {
      if (property === "execute") {
        return (statement: Parameters<RawClient["execute"]>[0]) => {
          const set = setOnce()
          const result = target.execute(statement)
          return Promise.all([set, result]).then(([, rows]) => rows, giveUpOnBusy)
        }
      }
      if (property === "transaction") {
        return (mode?: "write" | "read" | "deferred") => {
          const set = setOnce()
          const begun = begin(mode ?? "write")
          return Promise.allSettled([set, begun]).then(([, outcome]) =>
            outcome.status === "fulfilled"
              ? outcome.value
              : giveUpOnBusy(outcome.reason).catch(failedTransaction)
          )
        }
      }
      const value = Reflect.get(target, property, receiver)
      return typeof value === "function" ? value.bind(target) : value
    }
  })
}

/**
 * A SQLite client on `url` whose statements wait up to `busyTimeout` for another connection's (another
 * process's) write lock before failing with `SQLITE_BUSY`. The local driver is synchronous: the wait blocks
 * this process's event loop, so keep it short (default 1 second; the cluster's own write transactions hold
 * the lock for milliseconds).
 */
export const layerSqlite = (
  url: string,
  busyTimeout: Duration.DurationInput = defaultBusyTimeout
): Effect.Effect<Layer.Layer<SqlClient.SqlClient, StorageException>, StorageException> =>
  Effect.map(
    Effect.tryPromise({
      try: () => import("@effect/sql-libsql/LibsqlClient"),
      catch: () =>
        new StorageException({ reason: "a SQLite file needs the package @effect/sql-libsql (npm i @effect/sql-libsql@0.42.0)" })
    }),
    (LibsqlClient) => {
      const millis = Math.max(0, Math.round(Duration.toMillis(Duration.decode(busyTimeout))))
      return Layer.scopedContext(Effect.gen(function*() {
        // The stock client owns (and closes) the driver; the one served wraps that driver.
        const owner = yield* LibsqlClient.make({ url })
        const raw = (owner as unknown as { readonly sdk: RawClient }).sdk
        const client = yield* LibsqlClient.make({ liveClient: withBusyTimeout(raw, millis) })
        // WAL (a persistent property of the file): a COMMIT does not wait for readers, so it cannot fail
        // busy on another process's read and leave its write transaction open.
        yield* client`PRAGMA journal_mode = WAL`.pipe(
          Effect.mapError((cause) => new StorageException({ reason: `cannot open the SQLite file ${url}`, cause }))
        )
        return Context.make(LibsqlClient.LibsqlClient, client).pipe(Context.add(SqlClient.SqlClient, client))
      })).pipe(Layer.provide(Reactivity.layer))
    }
  )

/** The SQL client of a database URL (see `Database`); SQLite files get a busy timeout. */
export const layerFromUrl = (
  url: string,
  options?: { readonly busyTimeout?: Duration.DurationInput | undefined }
): Effect.Effect<Layer.Layer<SqlClient.SqlClient, unknown>, StorageException> => {
  const parsed = parseDatabaseUrl(url)
  if ("error" in parsed) return Effect.fail(new StorageException({ reason: parsed.error }))
  const database = parsed.database
  return database._tag === "Postgres"
    ? Effect.tryPromise({
      try: () => import("@effect/sql-pg/PgClient"),
      catch: () =>
        new StorageException({ reason: "a postgres:// URL needs the package @effect/sql-pg (npm i @effect/sql-pg@0.53.0)" })
    }).pipe(Effect.map((PgClient) => PgClient.layer({ url: database.url })))
    : layerSqlite(database.url, options?.busyTimeout)
}
