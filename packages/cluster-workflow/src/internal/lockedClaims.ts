/**
 * Claims that met a row locked by another transaction (see rowLocked.ts), tried again in the background so
 * the execution runs once the lock ends, even in an engine that never looks for orphans.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
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
 * Claims an execution and launches it here (`Engine.claimAndLaunch`). A claim that meets a locked row
 * counts as not claimed (false) and is tried again in the background, with backoff on the live clock,
 * for as long as the row stays locked (one background claim per execution at a time); it ends as soon as
 * an attempt claims the execution or finds it not claimable (finished, or claimed by another engine), or
 * fails otherwise, and with the engine. @internal
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

const retryLockedClaim = (engine: Engine, key: ExecutionKey): void => {
  const id = keyString(key)
  if (engine.lockedClaims.has(id)) return
  engine.lockedClaims.add(id)
  const attempt = (delay: number): Effect.Effect<void> =>
    Effect.zipRight(
      Effect.withClock(Effect.sleep(delay), liveClock),
      Effect.catchAll(Effect.asVoid(engine.claimAndLaunch(key)), (error) =>
        isRowLocked(error) ? attempt(Math.min(delay * 2, maxRetryMillis)) : Effect.void)
    )
  engine.runFork(Effect.ensuring(
    attempt(firstRetryMillis),
    Effect.sync(() => engine.lockedClaims.delete(id))
  ))
}
