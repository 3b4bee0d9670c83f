import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { Pod } from "../Pod.js"
import { HeartbeatRequest } from "../ShardAssignment.js"
import type { Handoff } from "./handoff.js"
import type { PodState } from "./podState.js"
import type { Singletons } from "./singletons.js"
import { restartOnDefect } from "../Supervise.js"

/**
 * Lease renewal (the heartbeat to the manager, and with `Storage.PodLeases` a renewal in the database) and
 * the watchdog that stops each shard before its unrenewed lease ends.
 */
export interface LeaseWatchdog {
  /** Renews the lease now; concurrent callers share one request. */
  readonly heartbeat: Effect.Effect<void>
  /** Records this process's incarnation in the database (with `PodLeases`; bounded, failures logged). */
  readonly registerInDatabase: Effect.Effect<void>
  /** The heartbeat loop and the watchdog, forked into the scope. */
  readonly start: Effect.Effect<void, never, Scope.Scope>
}

export const makeLeaseWatchdog = (state: PodState, handoff: Handoff, singletons: Singletons): LeaseWatchdog => {
  const { client, config, leases, monotonicMillis, self } = state.services
  const renewalMillis = Duration.toMillis(config.leaseRenewalInterval)
  const pauseMillis = () => Math.min(renewalMillis, state.grantedLeaseMillis / 3)

  const registerInDatabase: Effect.Effect<void> = leases === undefined ? Effect.void : leases.storage.registerPod(
    new Pod({ address: self, version: config.serverVersion }),
    leases.incarnation
  ).pipe(
    Effect.timeout(Duration.millis(renewalMillis)),
    Effect.catchAll((error) =>
      Effect.logWarning("could not record this pod in the database: its leases are renewed by the manager only", error)
    )
  )

  // The database renewal: one conditional statement for every shard held, at the epoch held. A renewed
  // shard's lease runs `lease` from when the statement was sent (the database counts from later); a shard
  // not renewed keeps only the manager's lease. Bounded by the renewal interval. When some are refused,
  // the pod records its incarnation again and (once) renews again at once.
  const renewInDatabase: Effect.Effect<void> = Effect.suspend(() => renewAttempt(true))
  const renewAttempt = (retry: boolean): Effect.Effect<void> => Effect.suspend(() => {
    if (leases === undefined || !state.registered || state.shuttingDown) return Effect.void
    const held = state.heldShards().map((shardId) => ({ shardId, epoch: state.heldEpoch[shardId]! }))
    if (held.length === 0) return Effect.void
    const lease = state.grantedLeaseMillis
    const sentAt = monotonicMillis()
    return leases.storage.renewShardLeases(self, leases.incarnation, held, lease).pipe(
      Effect.timeout(Duration.millis(renewalMillis)),
      Effect.matchEffect({
        onSuccess: (renewed) =>
          Effect.suspend(() => {
            const sent = new Map(held.map(({ epoch, shardId }) => [shardId, epoch]))
            for (const shard of renewed) {
              const epoch = sent.get(shard)
              if (epoch === undefined || state.heldEpoch[shard] !== epoch) continue
              if (state.dbLeaseEpoch[shard] !== epoch || state.dbLeaseEnd[shard]! < sentAt + lease) {
                state.dbLeaseEpoch[shard] = epoch
                state.dbLeaseEnd[shard] = sentAt + lease
              }
            }
            if (renewed.length === held.length) return Effect.void
            // Refused: moved, lapsed, or the pod's row lost this incarnation (the manager may write the pods
            // a moment before or after this pod recorded itself): recorded again for the next renewal.
            return Effect.logDebug(`${held.length - renewed.length} shards not renewed in the database`).pipe(
              Effect.zipRight(retry ? Effect.zipRight(registerInDatabase, renewAttempt(false)) : Effect.void)
            )
          }),
        onFailure: (error) => Effect.logDebug("lease renewal in the database failed", error)
      })
    )
  })

  let heartbeatInFlight: Effect.Effect<void> | undefined
  const heartbeat: Effect.Effect<void> = Effect.suspend(() => {
    if (heartbeatInFlight !== undefined) return heartbeatInFlight
    const run = Effect.gen(function*() {
      if (!state.registered || state.shuttingDown) return
      // The releases this pod confirms (the manager may never have seen a revocation's answer): only of
      // shards with no stop still running (`stopRunning`: a revocation's, which also marks them releasing, a
      // drop's, the leaving's). A revocation marks its shards released as their stop begins; listed while that
      // stop still runs (the manager's call gave up after its unassignTimeout: "still owned"), a shard would be
      // handed to its next owner at once, beside the work still stopping here.
      const released: Array<{ shardId: number; epoch: number }> = []
      for (let shard = 1; shard <= state.numberOfShards; shard++) {
        const epoch = state.releasedEpoch[shard]!
        if (epoch !== 0 && !handoff.stopRunning(shard)) released.push({ shardId: shard, epoch })
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
          yield* registerInDatabase
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
  const every = (effect: Effect.Effect<void>, fiber: string) =>
    restartOnDefect(
      `the pod's ${fiber}`,
      Effect.forever(Effect.zipRight(effect, Effect.suspend(() => Effect.sleep(Duration.millis(pauseMillis())))))
    ).pipe(Effect.annotateLogs({ pod: state.selfKey, fiber }))

  // When a shard's lease is about to end (lease end minus entityTerminationTimeout) without a renewal, stop
  // it (its entities and singletons) so that all has stopped by the lease end. Wakes at the earliest such
  // time, at least every renewal pause (a shard taken since has the manager's lease, no later). The stop
  // runs on without the watchdog waiting for it: shards whose database leases end at different times each
  // begin stopping at their own time, not once an earlier shard's stop (up to entityTerminationTimeout) has
  // returned, past their lease end. (The dropped shards are no longer held when the drop returns: the next
  // look does not drop them again. The pod's leaving waits for the stops still running.)
  const watchdog = restartOnDefect("the pod's lease watchdog", Effect.forever(Effect.suspend(() => {
    const now = monotonicMillis()
    const expired: Array<number> = []
    let next = state.leaseEnd - state.terminationMillis > now ? state.leaseEnd - state.terminationMillis : Infinity
    for (const shard of state.heldShards()) {
      const stopAt = state.shardLeaseEnd(shard) - state.terminationMillis
      if (now >= stopAt) expired.push(shard)
      else next = Math.min(next, stopAt)
    }
    const pause = Duration.millis(Math.max(1, Math.min(pauseMillis(), next - now)))
    if (expired.length > 0) {
      return Effect.zipRight(handoff.startDroppingShards(expired, "lease not renewed in time"), Effect.sleep(pause))
    }
    if (singletons.anyRunning() && now >= state.leaseEnd - state.terminationMillis && state.heldShards().length === 0) {
      return Effect.zipRight(handoff.dropAllShards("lease not renewed in time"), Effect.sleep(pause))
    }
    return Effect.sleep(pause)
  }))).pipe(Effect.annotateLogs({ pod: state.selfKey, fiber: "lease-watchdog" }))

  // Renews in the database every renewal pause, and at once when the held shards change (a shard just
  // taken is covered by the manager's lease only until its first renewal there).
  const databaseRenewal: Effect.Effect<void, never, Scope.Scope> = Effect.gen(function*() {
    const wake = yield* Queue.sliding<void>(1)
    yield* Effect.acquireRelease(
      Effect.sync(() => state.onHeldChange(() => void wake.unsafeOffer(undefined))),
      (stopListening) => Effect.sync(stopListening)
    )
    const pause = Effect.suspend(() => Effect.sleep(Duration.millis(pauseMillis())))
    yield* Effect.forkScoped(
      restartOnDefect(
        "the pod's database lease renewal",
        Effect.forever(Effect.zipRight(renewInDatabase, Effect.raceFirst(pause, Queue.take(wake))))
      ).pipe(Effect.annotateLogs({ pod: state.selfKey, fiber: "lease-renewal" }))
    )
  })

  return {
    heartbeat,
    registerInDatabase,
    start: Effect.all([
      Effect.forkScoped(every(heartbeat, "heartbeat")),
      Effect.forkScoped(watchdog),
      leases === undefined ? Effect.void : databaseRenewal
    ], { discard: true })
  }
}
