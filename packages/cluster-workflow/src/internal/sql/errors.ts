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
        : withConnectReason(error, errorMessage(error) || "SQL error"),
      retryable: isRetryable(error)
    })

// Why a connection could not be opened. Never prints the connection URL: a URL parse error carries the URL
// (with its password) in `input`, so only error codes and the driver's messages (which name hosts,
// databases and roles, never passwords) are used.

const field = (u: unknown, name: string): unknown => Predicate.isObject(u) ? (u as Record<string, unknown>)[name] : undefined

/** The first error in a cause chain (`cause`, `errors`) with one of `codes`. */
const findCoded = (cause: unknown, codes: ReadonlyArray<string>, depth = 0): unknown => {
  if (depth > 4 || !Predicate.isObject(cause)) return undefined
  const code = field(cause, "code")
  if (typeof code === "string" && codes.includes(code)) return cause
  const errors = field(cause, "errors")
  if (Array.isArray(errors)) {
    for (const e of errors) {
      const found = findCoded(e, codes, depth + 1)
      if (found !== undefined) return found
    }
  }
  return findCoded(field(cause, "cause"), codes, depth + 1)
}

const ownMessage = (u: unknown): string => {
  const message = field(u, "message")
  return typeof message === "string" ? message : ""
}

const endpoint = (u: unknown): string => {
  const address = field(u, "address")
  const port = field(u, "port")
  return typeof address === "string" ? (port !== undefined ? ` (${address}:${String(port)})` : ` (${address})`) : ""
}

/**
 * Why a connection failed, in one sentence, or undefined when the cause is not a connection failure this
 * recognises.
 */
export const describeConnectFailure = (cause: unknown): string | undefined => {
  const codes = errorCodes(cause)
  const has = (...wanted: Array<string>) => codes.some((code) => wanted.includes(code))
  if (has("ERR_INVALID_URL")) {
    return "the database URL is malformed (expected postgres://user[:password]@host[:port]/database)"
  }
  if (has("ECONNREFUSED")) {
    return `the connection was refused${endpoint(findCoded(cause, ["ECONNREFUSED"]))}: is the database server running on that host and port?`
  }
  if (has("ENOTFOUND", "EAI_AGAIN")) {
    const hostname = field(findCoded(cause, ["ENOTFOUND", "EAI_AGAIN"]), "hostname")
    return `the database host${typeof hostname === "string" ? ` "${hostname}"` : ""} was not found (is the database URL a postgres:// URL with the right host?)`
  }
  if (has("ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH")) {
    return `the database host is unreachable${endpoint(findCoded(cause, ["ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"]))}`
  }
  if (has("3D000")) {
    return `unknown database: ${ownMessage(findCoded(cause, ["3D000"]))}`
  }
  if (has("28000", "28P01")) {
    return `unknown role or authentication failed: ${ownMessage(findCoded(cause, ["28000", "28P01"]))}`
  }
  return undefined
}

/**
 * The `JournalError` for a client that could not connect: its message says why, then the driver's
 * message.
 */
export const connectError = (cause: unknown): JournalError => {
  const reason = describeConnectFailure(cause)
  const driver = errorMessage(cause) || "connection failed"
  return new JournalError({
    operation: "connect",
    message: reason === undefined ? `Could not connect to the database: ${driver}` : `Could not connect to the database: ${reason} (${driver})`,
    // a wrong database, role, password or URL stays wrong, whatever the driver's wrapper says
    retryable: !errorCodes(cause).some((code) => permanentConnectCodes.has(code)) && isRetryable(cause)
  })
}

/** Unknown database, unknown role or failed authentication, malformed URL: retrying cannot help. */
const permanentConnectCodes = new Set(["3D000", "28000", "28P01", "ERR_INVALID_URL"])

const withConnectReason = (cause: unknown, message: string): string => {
  const reason = describeConnectFailure(cause)
  return reason === undefined ? message : `${reason} (${message})`
}
