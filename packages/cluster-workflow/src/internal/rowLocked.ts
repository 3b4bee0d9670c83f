/**
 * A claim that met a row locked by another transaction (PostgreSQL: see `claim` in sql/claims.ts): "not
 * claimed now, try later". The timer backs off on it; starts, signals, `resume` and the orphan look take it
 * as not claimed now and try the claim again in the background (`claimOrRetryLater` in lockedClaims.ts).
 * (This module is imported by the SQL journal: it imports nothing of the engine.)
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { JournalError } from "./journal.js"
import { liveClock } from "./liveClock.js"

const message = "the execution's row is locked by another transaction: not claimed now, try later"

/** The retryable failure of a claim that met a locked row. @internal */
export const rowLocked = (): JournalError => new JournalError({ operation: "claim", message, retryable: true })

/** Whether a failure is a claim that met a locked row. @internal */
export const isRowLocked = (error: unknown): boolean =>
  error instanceof JournalError && error.operation === "claim" && error.message === message

/** The pauses (ms, live clock) before a look at a locked row is made again, then given up. */
const lockRetryMillis = [5, 10, 20, 40, 80]

/**
 * Runs `attempt` (undefined: it met a row locked by another transaction) again after each pause of
 * `lockRetryMillis` (~155 ms in all: a renewal or another engine's claim ends in milliseconds) while it
 * meets the lock; undefined when the row stayed locked. @internal
 */
export const lookAgainWhileLocked = <A, E>(attempt: Effect.Effect<A | undefined, E>): Effect.Effect<A | undefined, E> => {
  const loop = (retry: number): Effect.Effect<A | undefined, E> =>
    Effect.flatMap(attempt, (result) =>
      result !== undefined || retry >= lockRetryMillis.length
        ? Effect.succeed(result)
        : Effect.zipRight(
          Effect.withClock(Effect.sleep(lockRetryMillis[retry]!), liveClock),
          Effect.suspend(() => loop(retry + 1))
        ))
  return loop(0)
}
