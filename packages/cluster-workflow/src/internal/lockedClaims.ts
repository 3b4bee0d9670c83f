/**
 * Claims that met a row locked by another transaction (see rowLocked.ts), tried again in the background so
 * the execution runs once the lock ends, even in an engine that never looks for orphans.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { PayloadDecodeError } from "../WorkflowError.js"
import type { Engine } from "./engine.js"
import type { ExecutionKey, JournalError } from "./journal.js"
import { liveClock } from "./liveClock.js"
import { keyString } from "./results.js"
import { isRowLocked } from "./rowLocked.js"

/** The pauses (ms, live clock) between background claims of a locked row: doubling, then every 5 s. */
const firstRetryMillis = 100
const maxRetryMillis = 5_000

/**
 * Background claims kept at once per engine. Past it a locked row is left to the engine's later looks (the
 * liveness watch's repair, once a lease; the orphan check): thousands of locked rows must not mean
 * thousands of queries every few seconds.
 */
export const maxBackgroundClaims = 1_000

/**
 * Claims an execution and launches it here (`Engine.claimAndLaunch`). A claim that meets a locked row
 * counts as not claimed (false) and is tried again in the background (see `retryLockedClaim`).
 * @internal
 */
export const claimOrRetryLater = (
  engine: Engine,
  key: ExecutionKey
): Effect.Effect<boolean, JournalError | PayloadDecodeError> =>
  Effect.catchIf(engine.claimAndLaunch(key), isRowLocked, () =>
    Effect.sync(() => {
      retryLockedClaim(engine, key)
      return false
    }))

/** Whether a failed background claim is tried again: a locked row, or a failure the journal calls passing. */
const worthAnotherTry = (error: JournalError | PayloadDecodeError): boolean =>
  isRowLocked(error) || (error._tag === "JournalError" && error.retryable && error.reason === undefined)

/**
 * Claims a locked execution again in the background, with backoff on the live clock (100 ms doubling to
 * 5 s, each pause drawn between half and all of it, so the retries of many rows spread out), one background
 * claim per execution at a time. It goes on while the row stays locked, the journal fails passingly, or
 * another claim of the execution by this engine is in flight (that one may meet the lock too); it ends as
 * soon as an attempt claims the execution or finds it not claimable here (finished, claimed by another
 * engine, its shard gone), fails otherwise, and with the engine.
 */
const retryLockedClaim = (engine: Engine, key: ExecutionKey): void => {
  const id = keyString(key)
  if (engine.lockedClaims.has(id)) return
  if (engine.lockedClaims.size >= maxBackgroundClaims) {
    if (!engine.lockedClaimsFull) {
      engine.lockedClaimsFull = true
      engine.runFork(Effect.logWarning(
        `${maxBackgroundClaims} claims of locked rows are being retried already: further locked rows are left ` +
          "to the engine's later looks for orphaned executions"
      ))
    }
    return
  }
  engine.lockedClaims.add(id)
  const attempt = (delay: number): Effect.Effect<void> => {
    const next = () => attempt(Math.min(delay * 2, maxRetryMillis))
    return Effect.zipRight(
      Effect.flatMap(Random.nextRange(delay / 2, delay), (pause) => Effect.withClock(Effect.sleep(pause), liveClock)),
      Effect.matchEffect(engine.claimAndLaunch(key), {
        onFailure: (error) => worthAnotherTry(error) ? next() : Effect.void,
        onSuccess: (launched) => !launched && engine.claiming.has(id) && !engine.live.has(id) ? next() : Effect.void
      })
    )
  }
  engine.runFork(Effect.ensuring(
    attempt(firstRetryMillis),
    Effect.sync(() => {
      engine.lockedClaims.delete(id)
      if (engine.lockedClaims.size === 0) engine.lockedClaimsFull = false
    })
  ))
}
