/**
 * Background loops that must not end: `restartOnDefect` starts a loop again after a defect, with a
 * back-off while it keeps dying at once. Used by the pod and the shard manager, and by
 * `@effect-cluster/cluster-workflow`'s engine for its own loops.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

const liveClock: Clock.Clock = Context.get(DefaultServices.liveServices, Clock.Clock)

/**
 * A run at least this long (live clock) was healthy: the next restart is immediate again.
 *
 * @since 0.1.0
 */
export const healthyRunMillis = 1_000

/**
 * The count of short runs in a row once a run that lasted `ranMillis` ended.
 *
 * @since 0.1.0
 */
export const shortRunsAfter = (shortRuns: number, ranMillis: number): number =>
  ranMillis >= healthyRunMillis ? 0 : shortRuns

/**
 * How long a loop waits before it starts again after `shortRuns` runs in a row that each ended within
 * `healthyRunMillis`: at once after a healthy run, then 100 ms doubling to 30 s.
 *
 * @since 0.1.0
 */
export const restartDelayMillis = (shortRuns: number): number =>
  shortRuns === 0 ? 0 : Math.min(30_000, 100 * 2 ** Math.min(shortRuns - 1, 20))

/**
 * Runs `loop` for ever: a defect or failure that escapes it (a bug, a storage that throws instead of
 * failing) is logged as an error and the loop starts again, at once after a healthy run and with a
 * growing back-off while it keeps dying at once (`restartDelayMillis`, live clock). A pod whose lease
 * watchdog or renewal ended without a word would serve past its lease, or lose its shards while alive.
 * Interruption ends it. `what` names the loop in the log line: `${what} stopped on an unexpected error`.
 *
 * @since 0.1.0
 */
export const restartOnDefect = <E>(what: string, loop: Effect.Effect<never, E>): Effect.Effect<never> => {
  const attempt = (shortRuns: number): Effect.Effect<never> =>
    Effect.flatMap(Effect.withClock(Clock.currentTimeMillis, liveClock), (startedAt) =>
      Effect.catchAllCause(loop, (cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.gen(function*() {
          yield* Effect.logError(`${what} stopped on an unexpected error; it starts again`, cause)
          const ranMillis = (yield* Effect.withClock(Clock.currentTimeMillis, liveClock)) - startedAt
          const short = shortRunsAfter(shortRuns, ranMillis)
          const delay = restartDelayMillis(short)
          if (delay > 0) yield* Effect.withClock(Effect.sleep(Duration.millis(delay)), liveClock)
          return yield* attempt(short + 1)
        })))
  return attempt(0)
}
