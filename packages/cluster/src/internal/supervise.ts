/**
 * Background loops that must not end.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

const liveClock: Clock.Clock = Context.get(DefaultServices.liveServices, Clock.Clock)

/**
 * Runs `loop` for ever: a defect or failure that escapes it (a bug, a storage that throws instead of
 * failing) is logged as an error and the loop starts again after a back-off on the live clock (none the
 * first time, then 100 ms doubling to 30 s). A pod whose lease watchdog or renewal ended without a word
 * would serve past its lease, or lose its shards while alive. Interruption ends it.
 *
 * @internal
 */
export const restartOnDefect = <E>(what: string, loop: Effect.Effect<never, E>): Effect.Effect<never> => {
  const attempt = (restarts: number): Effect.Effect<never> =>
    Effect.catchAllCause(loop, (cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Effect.logError(`${what} stopped on an unexpected error; it starts again`, cause).pipe(
          Effect.zipRight(
            restarts === 0
              ? Effect.void
              : Effect.withClock(Effect.sleep(Duration.millis(Math.min(30_000, 100 * 2 ** Math.min(restarts - 1, 20)))), liveClock)
          ),
          Effect.zipRight(Effect.suspend(() => attempt(restarts + 1)))
        ))
  return attempt(0)
}
