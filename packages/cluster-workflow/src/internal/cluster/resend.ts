/**
 * The resends of a start whose execution's shard is between owners (see `resendingStart`).
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import { isShardMoved } from "../engineLaunch.js"
import { liveClock } from "../liveClock.js"

/**
 * The longest grace period the resends follow: a `shutdownGracePeriod` is to stay under the pod's
 * `entityTerminationTimeout` and its lease (seconds); a longer one (Infinity) would resend a start that is
 * refused for good, by an engine closed while its pod still holds the shard, for ever.
 */
export const maxResendGraceMillis = 5 * 60_000

/**
 * Sends a start again (same request id) while its shard is between owners, on the live clock (a shard takes
 * real time to move; `clock` is for tests):
 * - refused because the shard has just left the pod it reached (its fence) or that pod is leaving (its
 *   engine stops): 50 ms doubling up to 1 s apart, 12 times (about 8.5 s) and once more a second for the
 *   grace period (`shutdownGracePeriod`, at most `maxResendGraceMillis`: a pod leaving holds its shards,
 *   refusing starts, while its activities in flight finish, and pods share their configuration);
 * - not delivered (`MessageNotDeliveredException`: the messenger retried routing it for its
 *   `sendRetryTimeout`, no entity saw it): once a second until the grace period has passed since the first
 *   send. A shard the manager moves away from a pod that stays is served by no pod while that pod's drain
 *   runs, up to its grace period; without a grace period, not sent again.
 */
export const resendingStart = <A, E>(
  send: Effect.Effect<A, E>,
  graceMillis: number,
  clock: Clock.Clock = liveClock
): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    const grace = Number.isNaN(graceMillis) ? 0 : Math.min(Math.max(0, graceMillis), maxResendGraceMillis)
    const refusals = 12 + Math.ceil(grace / 1000)
    const firstSentAt = clock.unsafeCurrentTimeMillis()
    const pause = (millis: number) => Effect.withClock(Effect.sleep(millis), clock)
    const attempt = (refused: number): Effect.Effect<A, E> =>
      Effect.catchAll(send, (error) => {
        if (isShardMoved(error)) {
          return refused < refusals
            ? Effect.zipRight(pause(Math.min(50 * 2 ** refused, 1000)), attempt(refused + 1))
            : Effect.fail(error)
        }
        return Predicate.isTagged(error, "MessageNotDeliveredException") &&
            clock.unsafeCurrentTimeMillis() - firstSentAt < grace
          ? Effect.zipRight(pause(1000), attempt(refused))
          : Effect.fail(error)
      })
    return attempt(0)
  })
