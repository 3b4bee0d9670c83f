/**
 * Claim expiry on the database's clock.
 *
 * The engine speaks in instants of its own `Clock` (`now`, `claimUntil`); engines on different machines
 * have different clocks. The SQL journal therefore stores `claim_until` in the database's time and decides
 * "is this claim expired" in the statement itself, against the database's clock, so that it never compares
 * two machines' clocks:
 *
 * - On the database's clock (the journal's `clock: "database"`, the default): the database's clock is
 *   the time. A claim is stored as `db_now + (claimUntil - now)` (the lease's length, measured from when
 *   the database applies it), it is expired when `claim_until < db_now`, and the `now` the engine passes
 *   only dates the row. Two engines whose clocks disagree by minutes agree on every claim.
 * - On the caller's clock (`clock: "test"`, for tests on a `TestClock`, virtual time): each clock is
 *   mapped onto the database's clock once, by an offset measured at its first use (`db_now - clock_now`),
 *   and its instants are converted with that offset (`claim_until = claimUntil + offset`, expired when
 *   `claim_until < now + offset`). Moving the TestClock forward moves the journal's "now", so tests drive
 *   claim expiry with it; the conversion is exact (a claim taken until 1_600 reads back as 1_600).
 *
 * Rows are read back in the caller's clock: `claimUntil = claim_until - db_now + clock_now` (or
 * `claim_until - offset`), so an engine compares a claim's end with its own clock.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Statement from "@effect/sql/Statement"
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { JournalError } from "../journal.js"
import type { Dialect } from "./context.js"
import { withRetries } from "./retry.js"
import type { Row } from "./rows.js"
import { executionColumns, num } from "./rows.js"

/**
 * The database's clock in epoch milliseconds, as the text of a SQL expression evaluated by the statement
 * that uses it (PostgreSQL: `clock_timestamp()`; SQLite: `julianday('now')`, the machine's clock).
 *
 * @internal
 */
export const dbNowMillis = (dialect: Dialect): string =>
  dialect === "pg"
    ? "(floor(extract(epoch from clock_timestamp()) * 1000)::bigint)"
    : "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"

/**
 * How one operation converts the caller's instants into the database's time and back.
 *
 * @internal
 */
export interface TimeFrame {
  /** Added to `rel(...)` in SQL: the database's clock, or 0 for a TestClock. */
  readonly base: Statement.Fragment
  /** The part of the caller's instant `t` (taken at the caller's `now`) that is added to `base`. */
  readonly rel: (t: number, now: number) => number
  /** The caller's instant `t` (taken at its `now`) in the database's time, as a SQL expression. */
  readonly at: (t: number, now: number) => Statement.Fragment
  /** The caller's `now` in the database's time, as a SQL expression (what expiry is compared with). */
  readonly nowAt: (now: number) => Statement.Fragment
  /** The caller's clock when the frame was made (its `now` where an operation is not given one). */
  readonly local: number
  /** `claim_until` read back in the caller's clock, as a SQL expression (of the unqualified column). */
  readonly claimUntil: Statement.Fragment
  /** The execution columns, `claim_until` read back in the caller's clock. */
  readonly cols: Statement.Fragment
  /** The same, qualified by the alias `x`. */
  readonly xcols: Statement.Fragment
}

const columnsWith = (alias: string | undefined, claimUntil: string) =>
  executionColumns.split(", ").map((column) => {
    const qualified = alias === undefined ? column : `${alias}.${column}`
    return column === "claim_until" ? claimUntil.replaceAll("$", qualified) + " AS claim_until" : qualified
  }).join(", ")

/**
 * The frame of a journal that stores the caller's instants as they are (the default of a context that
 * has no clock to convert with: migrations, liveness, the 2024 log).
 *
 * @internal
 */
export const identityFrame = (sql: SqlClient.SqlClient): TimeFrame => ({
  base: zero(sql),
  rel: (t) => t,
  at: (t) => sql`CAST(${t} AS BIGINT)`,
  nowAt: (now) => sql`${now}`,
  local: 0,
  claimUntil: sql.literal("claim_until"),
  cols: sql.literal(executionColumns),
  xcols: sql.literal(columnsWith("x", "$"))
})

const integer = (n: number) => String(Math.round(n))

const zero = (sql: SqlClient.SqlClient) => sql.literal("CAST(0 AS BIGINT)")

/** The frame of the database's clock: it decides. */
const databaseFrame = (sql: SqlClient.SqlClient, dbNow: Statement.Fragment, dbNowText: string, clockNow: number) => {
  // claim_until - db_now + clock_now: the claim's end in the caller's clock.
  const back = `($ - ${dbNowText} + ${integer(clockNow)})`
  return {
    base: dbNow,
    rel: (t: number, now: number) => t - now,
    at: (t: number, now: number) => sql`(CAST(${Math.round(t - now)} AS BIGINT) + ${dbNow})`,
    nowAt: (_now: number) => dbNow,
    local: clockNow,
    claimUntil: sql.literal(back.replaceAll("$", "claim_until")),
    cols: sql.literal(columnsWith(undefined, back)),
    xcols: sql.literal(columnsWith("x", back))
  } satisfies TimeFrame
}

/** The frame of the caller's clock: its instants shifted by a fixed offset onto the database's time. */
const callerFrame = (sql: SqlClient.SqlClient, offset: number, clockNow: number) => {
  const back = `($ - ${integer(offset)})`
  return {
    base: zero(sql),
    rel: (t: number, _now: number) => t + offset,
    at: (t: number, _now: number) => sql.literal(`CAST(${integer(t + offset)} AS BIGINT)`),
    nowAt: (now: number) => sql.literal(integer(now + offset)),
    local: clockNow,
    claimUntil: sql.literal(back.replaceAll("$", "claim_until")),
    cols: sql.literal(columnsWith(undefined, back)),
    xcols: sql.literal(columnsWith("x", back))
  } satisfies TimeFrame
}

/**
 * Whose clock decides claim expiry: the database's (every deployment) or the caller's (tests on a
 * `TestClock`); the SQL journal's `clock` option.
 *
 * @internal
 */
export type JournalClock = "database" | "test"

/**
 * The time frames of one journal: the returned effect gives the frame of the calling fiber's clock (on
 * the `"test"` clock, each clock's offset to the database's clock is measured at its first use, with one
 * read, and kept).
 *
 * @internal
 */
export const makeFrames = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  retries: number,
  journalClock: JournalClock
): Effect.Effect<TimeFrame, JournalError> => {
  const dbNowText = dbNowMillis(dialect)
  const dbNow = sql.literal(dbNowText)
  const offsets = new WeakMap<Clock.Clock, number>()
  const measure = (clock: Clock.Clock) =>
    Effect.map(
      withRetries(retries, "clock", sql<Row>`SELECT ${dbNow} AS now_`),
      (rows) => {
        const known = offsets.get(clock)
        if (known !== undefined) return known
        const offset = num(rows[0]?.now_) - clock.unsafeCurrentTimeMillis()
        offsets.set(clock, offset)
        return offset
      }
    )
  return Effect.clockWith((clock) => {
    if (journalClock === "database") {
      return Effect.succeed(databaseFrame(sql, dbNow, dbNowText, clock.unsafeCurrentTimeMillis()))
    }
    const offset = offsets.get(clock)
    return offset !== undefined
      ? Effect.succeed(callerFrame(sql, offset, clock.unsafeCurrentTimeMillis()))
      : Effect.map(measure(clock), (measured) => callerFrame(sql, measured, clock.unsafeCurrentTimeMillis()))
  })
}
