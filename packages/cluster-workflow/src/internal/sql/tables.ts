/**
 * The SQL journal's options and table names.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { JournalError } from "../journal.js"


/**
 * Options of the SQL journal.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqlJournalOptions {
  /**
   * Prefix of the table and index names (`<prefix>_executions`, `<prefix>_events`, `<prefix>_signals`,
   * `<prefix>_engines`, `<prefix>_migrations`) and of the PostgreSQL channel `<prefix>_inbox`. Letters, digits and `_`, starting with a letter or `_`, at most 40 characters.
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
  /**
   * Whose clock decides when a claim has expired (docs/journal.md, "Claim expiry on the database's clock").
   *
   * - `"database"` (the default, for every deployment): the database's clock. A claim ends a lease after
   *   the database applies it, and "expired" is compared with the database's clock in the statement, so
   *   engines whose clocks disagree agree on every claim.
   * - `"test"`: the caller's `Clock`, for tests on a `TestClock` (virtual time) that drive claim expiry
   *   with `TestClock.adjust`. Each clock the journal is called with is mapped onto the database's time by
   *   an offset measured once, at its first use; its instants are stored as they are plus that offset, so
   *   moving the TestClock moves the journal's "now". Under the `"database"` clock a TestClock's instants
   *   only date the rows, and its claims end by the database's (real) time.
   */
  readonly clock?: "database" | "test" | undefined
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
export const schemaVersion = 2

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
  /** The engines alive on this journal and how to tell that they died (schema version 2). */
  readonly engines: string
  /** The PostgreSQL channel on which inbox changes are announced. */
  readonly channel: string
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
      migrations: `${prefix}_migrations`,
      engines: `${prefix}_engines`,
      channel: `${prefix}_inbox`
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
