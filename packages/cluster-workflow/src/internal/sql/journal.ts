/**
 * Assembles the SQL journal from its parts: the context (client, dialect, tables), the group commit
 * (commit.ts, rounds.ts, statements.ts), claims, the inbox, listing and retention.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Journal } from "../journal.js"
import { DurableExecutionJournal, JournalError } from "../journal.js"
import { SqlClientTag } from "../sqlClient.js"
import * as EventLog from "../eventLog.js"
import * as Claims from "./claims.js"
import { commit } from "./commit.js"
import type { SqlContext } from "./context.js"
import { dialectOf, makeContext } from "./context.js"
import * as SqlEventLog from "./eventLog.js"
import * as Engines from "./engines.js"
import { connectError, describeConnectFailure, isConnectionError, toJournalError, UserFailure } from "./errors.js"
import * as Inbox from "./inbox.js"
import * as Listing from "./listing.js"
import { ProcessLivenessService } from "./liveness.js"
import { migrate } from "./migrations.js"
import { inTransaction, isBusyError, retryLive, withRetries } from "./retry.js"
import type { Row } from "./rows.js"
import { decodeEvent, decodeSignal } from "./rows.js"
import type { SqlJournalOptions } from "./tables.js"
import { defaultPrefix, tableNames } from "./tables.js"

/** Reads an execution's events and inbox. */
const reads = ({ read, S, selectRow, sql, V }: SqlContext): Pick<Journal, "get" | "events" | "signals"> => ({
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
    )
})

/** A transactional activity's transaction on the journal's client (see `Journal.sql`). */
const transactional = ({ client, dialect, retries }: SqlContext): NonNullable<Journal["sql"]> => {
  // SQLite: a BEGIN refused as busy (another process holds the write lock) surfaces at the transaction's
  // first statement (see node/Sqlite.ts). A no-op statement first makes it a retried busy transaction
  // before the user's effect runs, instead of a failure of the user's first statement (or of the
  // recorded result's commit, which then looks like a COMMIT of unknown outcome).
  const begun: Effect.Effect<void, SqlError> = dialect === "sqlite" ? Effect.asVoid(client`SELECT 1`) : Effect.void
  return {
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

/**
 * The journal's first statement on its client. A client may connect only now (a pool of the user's own,
 * `PgClient.layerFromPool`, or a connection lost since the client was built): a failure to connect is the
 * `connectError` that says why (refused, unknown host, database or role, malformed URL), as `layerOn` gives
 * for a client layer that cannot connect, instead of a failure of whichever statement came first.
 */
const firstContact = (client: SqlClient.SqlClient): Effect.Effect<void, JournalError> =>
  Effect.mapError(
    client`SELECT 1`,
    (error) =>
      describeConnectFailure(error) !== undefined || isConnectionError(error)
        ? connectError(error)
        : toJournalError("make", error)
  )

/**
 * Builds a SQL journal on the `SqlClient` in context (see `DurableExecutionJournalSql.make`).
 *
 * @internal
 */
export const make = (
  options?: SqlJournalOptions
): Effect.Effect<Journal, JournalError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const client = yield* SqlClientTag
    const prefix = options?.prefix ?? defaultPrefix
    const tables = yield* tableNames(prefix)
    const retries = options?.busyRetries ?? 10
    const dialect = yield* dialectOf(client)
    const liveness = yield* Effect.serviceOption(ProcessLivenessService)
    const ctx = makeContext(client, dialect, tables, retries, options?.clock ?? "database")
    yield* firstContact(client)
    if (dialect === "sqlite" && options?.sqliteWal !== false) {
      yield* withRetries(retries, "make", ctx.sql`PRAGMA journal_mode = WAL`)
    }
    if (options?.migrate !== false) yield* migrate({ prefix })
    // On the "test" clock, map the caller's clock onto the database's now (once), not in the first operation.
    yield* ctx.framed
    // What stores, compares or returns a claim's end runs in the time frame of the caller's clock: claim
    // expiry is decided on the database's clock, or on the caller's for `clock: "test"` (time.ts).
    const { framed } = ctx
    const journal: Journal = {
      commit: (writes) => Effect.flatMap(framed, (at) => commit(at, writes)),
      get: (key) => Effect.flatMap(framed, (at) => reads(at).get(key)),
      events: reads(ctx).events,
      signals: reads(ctx).signals,
      claim: (...args) => Effect.flatMap(framed, (at) => Claims.claim(at)(...args)),
      renew: (...args) => Effect.flatMap(framed, (at) => Claims.renew(at)(...args)),
      signal: (...args) => Effect.flatMap(framed, (at) => Inbox.signal(at)(...args)),
      requestCancel: (...args) => Effect.flatMap(framed, (at) => Inbox.requestCancel(at)(...args)),
      resume: (...args) => Effect.flatMap(framed, (at) => Inbox.resume(at)(...args)),
      nextWakeAt: Claims.nextWakeAt(ctx),
      dueTimers: Claims.dueTimers(ctx),
      resumable: (...args) => Effect.flatMap(framed, (at) => Claims.resumable(at)(...args)),
      staleSuspensions: Claims.staleSuspensions(ctx),
      nextClaimExpiry: (...args) => Effect.flatMap(framed, (at) => Engines.nextClaimExpiry(at)(...args)),
      release: Engines.release(ctx),
      registerEngine: Engines.registerEngine(ctx, liveness),
      releaseDeadClaims: Engines.releaseDeadClaims(ctx, liveness),
      otherLiveEngines: Engines.otherLiveEngines(ctx, liveness),
      list: (options) => Effect.flatMap(framed, (at) => Listing.list(at)(options)),
      deleteCompleted: Listing.deleteCompleted(ctx),
      sql: transactional(ctx),
      // 2024's append/read, in the table named after the prefix (created on first use)
      ...EventLog.methods(SqlEventLog.make(ctx, prefix))
    }
    return journal
  })

/**
 * A layer with the SQL journal on the `SqlClient` in context.
 *
 * @internal
 */
export const layer = (
  options?: SqlJournalOptions
): Layer.Layer<DurableExecutionJournal, JournalError, SqlClient.SqlClient> =>
  Layer.effect(DurableExecutionJournal, make(options))
