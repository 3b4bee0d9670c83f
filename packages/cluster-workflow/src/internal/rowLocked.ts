/**
 * A claim that met a row locked by another transaction (PostgreSQL: see `claim` in sql/claims.ts): "not
 * claimed now, try later". The timer backs off on it; starts, signals and the orphan look take it as not
 * claimed (the execution is tried again at a later look).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { JournalError } from "./journal.js"

const message = "the execution's row is locked by another transaction: not claimed now, try later"

/** The retryable failure of a claim that met a locked row. @internal */
export const rowLocked = (): JournalError => new JournalError({ operation: "claim", message, retryable: true })

/** Whether a failure is a claim that met a locked row. @internal */
export const isRowLocked = (error: unknown): boolean =>
  error instanceof JournalError && error.operation === "claim" && error.message === message

/** A claim (and launch) that met a locked row counts as not claimed (false). @internal */
export const unlessRowLocked = <E, R>(claim: Effect.Effect<boolean, E, R>): Effect.Effect<boolean, E, R> =>
  Effect.catchIf(claim, isRowLocked, () => Effect.succeed(false))
