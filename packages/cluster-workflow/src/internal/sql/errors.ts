/**
 * How the SQL journal classifies database failures (busy, connection, unknown COMMIT outcome) and turns
 * them into `JournalError`s.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Predicate from "effect/Predicate"
import { JournalError } from "../journal.js"

export const errorCodes = (cause: unknown): Array<string> => {
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

export const errorMessage = (cause: unknown): string => {
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
export const isBusy = (codes: ReadonlyArray<string>): boolean =>
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
export const isConnectionError = (cause: unknown): boolean => {
  if (errorCodes(cause).some((code) => connectionErrorCodes.has(code) || code.startsWith("08"))) return true
  const message = errorMessage(cause)
  return connectionMessages.some((m) => message.includes(m))
}

/** Whether an error of the database is transient: busy, deadlock, or the connection (a retry may help). */
export const isRetryable = (cause: unknown): boolean => isBusy(errorCodes(cause)) || isConnectionError(cause)

/** A failure of the user's effect inside `sql.withTransaction`, kept apart from the journal's own errors. */
export class UserFailure<E> {
  constructor(readonly error: E) {}
}

/** COMMIT failed (`@effect/sql` turns that into a defect): the outcome is unknown to the caller. */
export class CommitFailure {
  constructor(readonly cause: unknown) {}
}

export const isSqlError = (u: unknown): u is SqlError => Predicate.isTagged(u, "SqlError")

export const toJournalError = (operation: string, error: SqlError | CommitFailure): JournalError =>
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