/**
 * A claim that met a row locked by another transaction (PostgreSQL: see `claim` in sql/claims.ts): "not
 * claimed now, try later". The timer backs off on it; starts, signals, `resume` and the orphan look take it
 * as not claimed now and try the claim again in the background (`claimOrRetryLater` in lockedClaims.ts).
 * (This module is imported by the SQL journal: it imports nothing of the engine.)
 *
 * @internal
 */
import { JournalError } from "./journal.js"

const message = "the execution's row is locked by another transaction: not claimed now, try later"

/** The retryable failure of a claim that met a locked row. @internal */
export const rowLocked = (): JournalError => new JournalError({ operation: "claim", message, retryable: true })

/** Whether a failure is a claim that met a locked row. @internal */
export const isRowLocked = (error: unknown): boolean =>
  error instanceof JournalError && error.operation === "claim" && error.message === message
