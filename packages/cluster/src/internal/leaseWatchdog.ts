import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import { HeartbeatRequest } from "../ShardAssignment.js"
import type { Handoff } from "./handoff.js"
import type { PodState } from "./podState.js"
import type { Singletons } from "./singletons.js"

/** Lease renewal (the heartbeat) and the watchdog that stops everything before an unrenewed lease ends. */
export interface LeaseWatchdog {
  /** Renews the lease now; concurrent callers share one request. */
  readonly heartbeat: Effect.Effect<void>
  /** The heartbeat loop and the watchdog, forked into the scope. */
  readonly start: Effect.Effect<void, never, Scope.Scope>
}

export const makeLeaseWatchdog = (state: PodState, handoff: Handoff, singletons: Singletons): LeaseWatchdog => {
  const { client, config, monotonicMillis, self } = state.services

  let heartbeatInFlight: Effect.Effect<void> | undefined
  const heartbeat: Effect.Effect<void> = Effect.suspend(() => {
    if (heartbeatInFlight !== undefined) return heartbeatInFlight
    const run = Effect.gen(function*() {
      if (!state.registered || state.shuttingDown) return
      const released: Array<{ shardId: number; epoch: number }> = []
      for (let shard = 1; shard <= state.numberOfShards; shard++) {
        const epoch = state.releasedEpoch[shard]!
        if (epoch !== 0) released.push({ shardId: shard, epoch })
      }
      const sentAt = monotonicMillis()
      const result = yield* Effect.either(
        client.heartbeat(new HeartbeatRequest({ podAddress: self, version: config.serverVersion, released }))
      )
      if (Either.isRight(result)) {
        if (state.registered && !state.shuttingDown) yield* handoff.applyGrant(result.right, sentAt)
        return
      }
      const error = result.left
      if (error._tag === "PodNoLongerRegisteredException") {
        // The manager declared this pod dead (its lease had ended): drop everything, join again.
        yield* handoff.dropAllShards("the shard manager no longer knows this pod")
        if (state.registered && !state.shuttingDown) {
          yield* client.register(self).pipe(
            Effect.zipRight(Effect.suspend(() => {
              heartbeatInFlight = undefined
              return heartbeat
            })),
            Effect.catchAll((error) => Effect.logWarning("could not register again", error))
          )
        }
      } else {
        yield* Effect.logDebug("lease renewal failed: shard manager unavailable")
      }
    }).pipe(Effect.ensuring(Effect.sync(() => void (heartbeatInFlight = undefined))))
    const cached = Effect.runSync(Effect.cached(run))
    heartbeatInFlight = cached
    return cached
  })

  // Renews every leaseRenewalInterval, or a third of the lease the manager granted if that is shorter.
  const renewalMillis = Duration.toMillis(config.leaseRenewalInterval)
  const renewal = Effect.forever(Effect.zipRight(
    heartbeat,
    Effect.suspend(() => Effect.sleep(Duration.millis(Math.min(renewalMillis, state.grantedLeaseMillis / 3))))
  )).pipe(
    Effect.annotateLogs({ pod: state.selfKey, fiber: "heartbeat" })
  )

  // When the lease is about to end (lease end minus entityTerminationTimeout) without a renewal, stop every
  // entity and singleton so they have all stopped by the lease end.
  const watchdog = Effect.forever(Effect.suspend(() => {
    const now = monotonicMillis()
    const stopAt = state.leaseEnd - state.terminationMillis
    if (now >= stopAt) {
      const holdsAny = state.heldShards().length > 0
      const drop = holdsAny || singletons.anyRunning()
        ? handoff.dropAllShards("lease not renewed in time")
        : Effect.void
      return Effect.zipRight(drop, Effect.sleep(Duration.millis(Math.min(renewalMillis, state.grantedLeaseMillis / 3))))
    }
    return Effect.sleep(Duration.millis(stopAt - now))
  })).pipe(Effect.annotateLogs({ pod: state.selfKey, fiber: "lease-watchdog" }))

  return {
    heartbeat,
    start: Effect.zipRight(Effect.forkScoped(renewal), Effect.forkScoped(watchdog)).pipe(Effect.asVoid)
  }
}
