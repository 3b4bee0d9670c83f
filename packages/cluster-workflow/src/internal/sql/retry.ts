/**
 * Retries of busy or deadlocked transactions on the live clock, and transactions whose failed COMMIT is
 * reported as a typed failure of unknown outcome instead of `@effect/sql`'s defect.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { JournalError } from "../journal.js"
import { CommitFailure, errorCodes, isBusy, isSqlError, toJournalError } from "./errors.js"
import { liveClock } from "../liveClock.js"


/** Jittered exponential backoff: 5 ms, 10 ms, 20 ms ... capped at 250 ms. */
const backoff = (attempt: number): Duration.Duration =>
  Duration.millis(Math.min(250, 5 * 2 ** attempt) * (0.5 + Math.random()))

/**
 * Retries `effect` while `retryable` says so, sleeping between attempts on the live clock (only the sleep:
 * the effect itself keeps the fiber's clock, so tests on TestClock neither hang nor see real time).
 */
export const retryLive = <A, E, R>(
  operation: string,
  effect: Effect.Effect<A, E, R>,
  retries: number,
  retryable: (error: E) => boolean
): Effect.Effect<A, E, R> => {
  const loop = (attempt: number): Effect.Effect<A, E, R> =>
    Effect.catchIf(
      effect,
      (error) => attempt < retries && retryable(error),
      () =>
        Effect.logDebug("Journal database busy, retrying").pipe(
          Effect.annotateLogs({ operation, attempt: attempt + 1 }),
          Effect.zipRight(Effect.withClock(Effect.sleep(backoff(attempt)), liveClock)),
          Effect.zipRight(loop(attempt + 1))
        )
    )
  return loop(0)
}

/** A failed COMMIT is a defect in `@effect/sql`: turn it back into a typed (unknown-outcome) failure. */
const catchCommitDefect = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | CommitFailure, R> =>
  Effect.catchAllDefect(effect, (defect) =>
    isSqlError(defect) ? Effect.fail(new CommitFailure(defect.cause ?? defect)) : Effect.die(defect))

/**
 * Runs `body` in a transaction. `@effect/sql` turns a failed COMMIT or ROLLBACK into a defect: after the
 * body failed, a failed ROLLBACK (say, the connection is gone) leaves the body's failure (nothing was
 * committed: the server aborts the transaction); after it succeeded, a failed COMMIT is a `CommitFailure`
 * whose outcome is unknown.
 */
export const inTransaction = <A, E, R>(
  withTransaction: <A1, E1, R1>(self: Effect.Effect<A1, E1, R1>) => Effect.Effect<A1, E1 | SqlError, R1>,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError | CommitFailure, R> =>
  Effect.suspend(() => {
    let failure: { readonly error: E } | undefined
    return Effect.catchAllDefect(
      withTransaction(Effect.tapError(body, (error) =>
        Effect.sync(() => {
          failure = { error }
        }))),
      (defect): Effect.Effect<never, E | CommitFailure> =>
        !isSqlError(defect)
          ? Effect.die(defect)
          : failure !== undefined
          ? Effect.fail(failure.error)
          : Effect.fail(new CommitFailure(defect.cause ?? defect))
    )
  })

export const isBusyError = (error: unknown): boolean => isSqlError(error) && isBusy(errorCodes(error))

/**
 * Runs a journal operation: busy / deadlocked transactions (rolled back as a whole) are retried with
 * backoff, then every SQL failure becomes a `JournalError`.
 */
export const withRetries = <A, R>(
  retries: number,
  operation: string,
  effect: Effect.Effect<A, SqlError | CommitFailure | JournalError, R>
): Effect.Effect<A, JournalError, R> =>
  Effect.mapError(
    retryLive(operation, catchCommitDefect(effect), retries, isBusyError),
    (error) => error instanceof JournalError ? error : toJournalError(operation, error)
  )