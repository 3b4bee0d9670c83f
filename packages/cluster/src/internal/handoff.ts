import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { type LeaseGrant, ShardAssignment } from "../ShardAssignment.js"
import { PodUnavailableException } from "../ShardingException.js"
import { podKeyOf, type PodState } from "./podState.js"
import type { Routing } from "./routing.js"
import type { ShardStopKind } from "../Sharding.js"
import type { Singletons } from "./singletons.js"

/**
 * Shard hand-off: taking shards the manager grants, releasing shards it revokes or this pod can no longer
 * hold, and stopping what ran on them before anyone is told they are free.
 */
export interface Handoff {
  /** Takes a shard at an epoch (unless released at that epoch, or a later epoch is known). */
  readonly takeShard: (shard: number, epoch: number) => boolean
  /** Applies a lease grant: the lease, the routing table, shards gained and lost. */
  readonly applyGrant: (grant: LeaseGrant, sentAt: number) => Effect.Effect<void>
  /** Stops serving every shard (lease lost, or the manager forgot this pod). */
  readonly dropAllShards: (reason: string) => Effect.Effect<void>
  /** Stops serving some shards (their lease ended); returns once what ran on them has stopped. */
  readonly dropShards: (shards: ReadonlyArray<number>, reason: string) => Effect.Effect<void>
  /**
   * Stops serving some shards (their lease ends) as this effect starts, and starts their stop in a fiber of
   * its own without waiting for it (the lease watchdog: each shard's stop begins at its own time). The pod's
   * leaving, and a revocation of those shards, wait for the stop; a defect in it is logged.
   */
  readonly startDroppingShards: (shards: ReadonlyArray<number>, reason: string) => Effect.Effect<void>
  /** The manager's assignment of shards at epochs. */
  readonly assign: (shards: Iterable<number>, epochs: ReadonlyMap<number, number>) => Effect.Effect<void>
  /**
   * The manager's revocation: returns once what ran on the shards has stopped. A revocation below the epoch
   * held is refused (after stopping the shard): the manager regressed, and this pod did not release that epoch.
   */
  readonly unassign: (
    shards: Iterable<number>,
    epochs: ReadonlyMap<number, number> | undefined
  ) => Effect.Effect<void, PodUnavailableException>
  /**
   * Releases every shard and stops every entity, topic instance and singleton (shutdown). `leaving` runs in
   * the same synchronous step as the release (the pod's shutting down, which also ends the serving), so the
   * held shards are marked released in a hand-off (`releasingShardEpochs`) before they stop being served.
   */
  readonly stopEverything: (leaving?: () => void) => Effect.Effect<void>
  /**
   * The shards this pod has stopped serving in a hand-off (a revocation, the pod leaving) whose stop still
   * runs, each with the (highest) epoch released: their fences stay this pod's until the stop returns.
   */
  readonly releasingShardEpochs: () => ReadonlyMap<number, number>
  /**
   * Whether a stop of the shard still runs: a revocation's, or a drop's (not marked releasing: a shard the
   * watchdog dropped, then revoked, is released while that stop runs).
   */
  readonly stopRunning: (shard: number) => boolean
}

/**
 * Shards released in a hand-off whose stop still runs, with the epochs released (one entry per stop: two
 * stops of one shard may overlap, e.g. after the shard came back at a later epoch, and the first to end
 * must not unmark the other).
 */
class Releasing {
  private readonly epochs = new Map<number, Array<number>>()

  /** Marks `released` (shard, epoch) pairs; returns what unmarks them (once). */
  mark(released: ReadonlyArray<readonly [number, number]>): () => void {
    for (const [shard, epoch] of released) {
      const list = this.epochs.get(shard)
      if (list === undefined) this.epochs.set(shard, [epoch])
      else list.push(epoch)
    }
    let done = false
    return () => {
      if (done) return
      done = true
      for (const [shard, epoch] of released) {
        const list = this.epochs.get(shard)
        if (list === undefined) continue
        const at = list.indexOf(epoch)
        if (at >= 0) list.splice(at, 1)
        if (list.length === 0) this.epochs.delete(shard)
      }
    }
  }

  snapshot(): ReadonlyMap<number, number> {
    const out = new Map<number, number>()
    for (const [shard, list] of this.epochs) out.set(shard, Math.max(...list))
    return out
  }
}

/** Stopping what ran on shards: entities, singletons and registered work, within one termination timeout. */
const makeStoppers = (state: PodState, singletons: Singletons) => {
  // Entities and singletons stop together, all within one entityTerminationTimeout, on every path (lease
  // loss, revocation, shutdown); the returned effect ends once every one has stopped.
  const stopShards = (shards: ReadonlyArray<number>, kind: ShardStopKind): Effect.Effect<void> =>
    shards.length === 0 ? singletons.sync() : Effect.zip(
      Effect.forEach(
        Array.from(state.entityManagers.values()).filter((manager) => !manager.isTopic),
        (manager) =>
          Effect.forEach(shards, (shard) => manager.stopShard(shard), { concurrency: "unbounded", discard: true }),
        { concurrency: "unbounded", discard: true }
      ),
      Effect.zip(singletons.sync(), stopOwnWork(shards, kind), { concurrent: true }),
      { concurrent: true }
    )

  // What registered work of its own per shard (`Sharding.registerShardStop`) stops with the entities, within
  // the same entityTerminationTimeout.
  const stopOwnWork = (shards: ReadonlyArray<number>, kind: ShardStopKind): Effect.Effect<void> =>
    shards.length === 0 || state.shardStoppers.size === 0 ? Effect.void : Effect.forEach(
      Array.from(state.shardStoppers),
      (stop) =>
        // (suspended: a hook that throws instead of returning an effect fails only itself, not the whole stop)
        Effect.suspend(() => stop(shards, kind)).pipe(
          Effect.timeoutOption(state.terminationMillis),
          Effect.catchAllCause((cause) => Effect.logWarning("a shard stop hook failed", cause))
        ),
      { concurrency: "unbounded", discard: true }
    )

  return { stopShards, stopOwnWork }
}

// A held shard whose lease ends within entityTerminationTimeout (no longer served: the watchdog stops it, or
// is about to). A hand-off's stop, bounded by that timeout from now, could run past the lease end, after which
// a silent pod's shards move (a revocation whose call failed leaves the shard with this pod): released now, it
// is stopped as the watchdog would have stopped it, lost (in-flight work cut off at once), so that it has
// stopped by the lease end. Read while the shard is still held (its database lease counts only then).
const pastServing = (state: PodState, shard: number): boolean =>
  state.services.monotonicMillis() >= state.shardLeaseEnd(shard) - state.terminationMillis

// Shards whose grant or revocation came below the epoch held: no longer held, routed as the manager says.
const dropRegressed = (
  state: PodState,
  assignments: ReadonlyArray<ShardAssignment>,
  what: string
): Effect.Effect<void> => {
  if (assignments.length === 0) return Effect.void
  for (const assignment of assignments) {
    state.setHeld(assignment.shardId, 0)
    state.routing[assignment.shardId] = assignment.pod === null
      ? { pod: undefined, podKey: "", epoch: assignment.epoch }
      : { pod: assignment.pod, podKey: podKeyOf(assignment.pod), epoch: assignment.epoch }
  }
  return Effect.logError(
    `the shard manager sent a ${what} below the epoch this pod holds (a manager regression): stopping shards ${
      assignments.map((assignment) => assignment.shardId).join(",")
    }`
  )
}

// The timing rule checked at start-up, against a shorter lease the manager granted (the renewal adapts on
// its own): a warning when entityTerminationTimeout no longer fits.
const shorterLeaseWarning = (state: PodState, lease: number): Effect.Effect<void> => {
  const renewal = Math.min(Duration.toMillis(state.services.config.leaseRenewalInterval), lease / 3)
  const margin = Duration.toMillis(state.services.config.leaseMargin)
  return state.terminationMillis < lease - renewal - margin ? Effect.void : Effect.logWarning(
    `the shard manager grants ${lease} ms leases: entityTerminationTimeout (${state.terminationMillis} ms) must be less than ${
      lease - renewal - margin
    } ms, or entities may still be stopping when the lease ends`
  )
}

// Shutdown: every shard released at the epoch held (marked releasing in a hand-off, in the same synchronous
// step as `leaving`, the pod's shutting down), every entity, topic instance and singleton stopped.
const stopEverythingOf = (
  state: PodState,
  singletons: Singletons,
  releasing: Releasing,
  stopOwnWork: (shards: ReadonlyArray<number>, kind: ShardStopKind) => Effect.Effect<void>,
  stillStopping: () => Effect.Effect<void>,
  register: (shards: ReadonlyArray<number>, unmark: () => void, stop: Effect.Effect<void>) => Effect.Effect<void>,
  leaving: () => void
): Effect.Effect<void> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      const { heldEpoch, releasedEpoch } = state
      const held = Array.from(state.heldShards())
      const late = held.filter((shard) => pastServing(state, shard))
      const inTime = late.length === 0 ? held : held.filter((shard) => !late.includes(shard))
      const unmark = releasing.mark(held.map((shard) => [shard, heldEpoch[shard]!] as const))
      leaving()
      for (const shard of held) {
        if (heldEpoch[shard]! > releasedEpoch[shard]!) releasedEpoch[shard] = heldEpoch[shard]!
        state.setHeld(shard, 0)
      }
      state.heldChanged()
      const stop = Effect.zip(
        singletons.sync(),
        Effect.zip(
          Effect.forEach(state.entityManagers.values(), (manager) => manager.stopAll(), {
            concurrency: "unbounded",
            discard: true
          }),
          // (the pod holds the shards' fences until it unregisters: a hand-off, unless the lease ends first)
          Effect.zip(stopOwnWork(inTime, "handoff"), stopOwnWork(late, "lost"), { concurrent: true }),
          { concurrent: true }
        ),
        { concurrent: true }
      )
      // (and the revoked shards' stops still running: the pod leaves once they have returned too. Taken before
      // this stop is registered with them, `stopping`: a revocation arriving meanwhile waits for it, as the
      // manager takes its return as the confirmation)
      const earlier = stillStopping()
      // The stop runs in a daemon fiber, interruptible: its timeouts (a stop hook's, an entity's termination)
      // cut what overruns. In the caller's fiber it could not: the Sharding layer's finalizer leaves
      // uninterruptibly, and an effect timed out in an uninterruptible region is waited for. The caller waits
      // for it (interrupted, it ends only its wait, as with a revocation).
      return Effect.flatMap(
        Effect.forkDaemon(register(held, unmark, Effect.interruptible(Effect.zip(stop, earlier, { concurrent: true })))),
        (fiber) => restore(Fiber.join(fiber))
      )
    })
  )

export const makeHandoff = (state: PodState, routing: Routing, singletons: Singletons): Handoff => {
  const { heldEpoch, releasedEpoch } = state
  const leaseMillis = Duration.toMillis(state.services.config.leaseDuration)
  const { stopOwnWork, stopShards } = makeStoppers(state, singletons)
  const releasing = new Releasing()

  // A grant or revocation below the epoch this pod holds, sent after the pod took the shard, can only come
  // from a manager that lost its epochs (a restart on storage without durable epochs). The pod stops the shard
  // (another pod may be given it at any epoch, or still hold it from before), confirms nothing it did not
  // release, and takes the manager's new epochs as the truth from now on (so the shard can come back).
  const regressed = (shard: number, epoch: number): boolean => heldEpoch[shard]! !== 0 && epoch < heldEpoch[shard]!
  // When each shard was taken (monotonic ms): a grant from a heartbeat sent earlier may predate it (stale).
  const takenAt = new Float64Array(state.numberOfShards + 1)

  const takeShard = (shard: number, epoch: number): boolean => {
    if (!state.registered || state.shuttingDown) return false
    if (epoch <= releasedEpoch[shard]!) return false
    const route = state.routing[shard]
    if (route !== undefined && epoch < route.epoch) return false
    if (epoch < heldEpoch[shard]!) return false
    if (heldEpoch[shard]! !== epoch) takenAt[shard] = state.services.monotonicMillis()
    state.setHeld(shard, epoch)
    state.routing[shard] = { pod: state.services.self, podKey: state.selfKey, epoch }
    return true
  }

  const applyGrant = (grant: LeaseGrant, sentAt: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      // The lease runs from when the heartbeat was *sent*: the manager granted it later than that.
      const lease = Math.min(leaseMillis, grant.leaseDurationMillis)
      const end = sentAt + lease
      if (end > state.leaseEnd) state.leaseEnd = end
      const shorter = lease < state.grantedLeaseMillis
      state.grantedLeaseMillis = lease
      const lost: Array<number> = []
      const regressions: Array<ShardAssignment> = []
      for (const assignment of grant.assignments) {
        const shard = assignment.shardId
        if (!state.inRange(shard)) continue
        if (regressed(shard, assignment.epoch) && sentAt > takenAt[shard]!) {
          regressions.push(assignment)
          continue
        }
        routing.updateRoute(assignment)
        const mine = assignment.pod !== null && podKeyOf(assignment.pod) === state.selfKey
        if (mine) {
          takeShard(shard, assignment.epoch)
        } else if (heldEpoch[shard]! !== 0 && assignment.epoch >= heldEpoch[shard]!) {
          // The manager has the shard elsewhere (or nowhere) at our epoch or later: stop serving it.
          state.setHeld(shard, 0)
          lost.push(shard)
        }
        if (releasedEpoch[shard]! !== 0 && assignment.epoch > releasedEpoch[shard]!) {
          releasedEpoch[shard] = 0 // the manager has moved past our release
        }
      }
      const dropped = regressions.map((assignment) => assignment.shardId)
      // (the stop is registered with the others, `stopping`: the pod's leaving and a revocation wait for it, and
      // the heartbeat's interruption as the pod's scope closes does not cut it short. The heartbeat does not
      // wait for it: a stop of up to entityTerminationTimeout, or one that overruns (a finalizer or an
      // uninterruptible stop hook that hangs), must not delay the renewal of the pod's other shards past their
      // lease end; the shards' release waits for it still.)
      const stopped = lost.concat(dropped)
      const applied = Effect.zipRight(
        dropRegressed(state, regressions, "grant"),
        stopped.length === 0
          ? stopShards(stopped, "lost")
          : Effect.asVoid(stopRegistered(stopped, "moved by the shard manager", stopShards(stopped, "lost")))
      )
      return shorter ? Effect.zipRight(shorterLeaseWarning(state, lease), applied) : applied
    })

  const dropAllShards = (reason: string): Effect.Effect<void> =>
    Effect.suspend(() => dropShards(state.heldShards(), reason))

  // The shards stop being served (synchronously, as the effect starts: the watchdog's next look does not see
  // them held) and their stop, lost (in-flight work cut off), runs in a fiber of its own, registered with the
  // revocations' stops (`stopping`): the pod's leaving and a revocation of those shards wait for it, and an
  // interrupted caller (the watchdog as the pod's scope closes) ends only its wait. A defect in the stop is
  // logged there (nobody may join it).
  const beginDrop = (shards: ReadonlyArray<number>, reason: string): Effect.Effect<Fiber.RuntimeFiber<void>> =>
    Effect.uninterruptible(Effect.suspend(() => {
      const dropped = shards.filter((shard) => heldEpoch[shard]! !== 0)
      for (const shard of dropped) state.setHeld(shard, 0)
      const stop = dropped.length === 0 ? singletons.sync() : Effect.logWarning(
        `dropping ${dropped.length} shards: ${reason}`
      ).pipe(Effect.zipRight(stopShards(dropped, "lost")))
      return stopRegistered(dropped, reason, stop)
    }))

  // A stop of shards no longer held, in a daemon fiber registered with the others (`stopping`), both in one
  // uninterruptible step (registered, a stop that never started would hold their release for ever); a defect
  // in it is logged there. The stop itself is interruptible: a fiber forked in an uninterruptible region
  // inherits it, and its timeouts (a stop hook's, an entity's termination) could then cut nothing short.
  const stopRegistered = (
    shards: ReadonlyArray<number>,
    reason: string,
    stop: Effect.Effect<void>
  ): Effect.Effect<Fiber.RuntimeFiber<void>> =>
    Effect.uninterruptible(Effect.suspend(() =>
      Effect.forkDaemon(stopRevoked(
        shards,
        () => {},
        Effect.interruptible(Effect.catchAllCause(stop, (cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.void
            : Effect.logError(`stopping shards ${shards.join(",")} (${reason}) failed`, cause)))
      ))
    ))

  const dropShards = (shards: ReadonlyArray<number>, reason: string): Effect.Effect<void> =>
    Effect.flatMap(beginDrop(shards, reason), Fiber.join)

  const startDroppingShards = (shards: ReadonlyArray<number>, reason: string): Effect.Effect<void> =>
    Effect.asVoid(beginDrop(shards, reason))

  const assign = (shards: Iterable<number>, epochs: ReadonlyMap<number, number>): Effect.Effect<void> =>
    Effect.suspend(() => {
      const regressions: Array<ShardAssignment> = []
      for (const shard of shards) {
        const epoch = epochs.get(shard)
        if (epoch === undefined || !state.inRange(shard)) continue
        // A push at or below an epoch this pod released is a late copy of an old one, not a regression.
        if (regressed(shard, epoch) && epoch > releasedEpoch[shard]!) {
          regressions.push(new ShardAssignment({ shardId: shard, pod: state.services.self, epoch }))
        } else {
          takeShard(shard, epoch)
        }
      }
      return regressions.length === 0
        ? singletons.sync()
        : Effect.zipRight(
          dropRegressed(state, regressions, "grant"),
          stopShards(regressions.map((assignment) => assignment.shardId), "lost")
        )
    })

  // The stops of revoked (or dropped: `beginDrop`) shards still running, by shard. They may outlive the
  // manager's call (it gives up after its unassignTimeout, the stop runs on): a revocation asked again, or
  // the pod leaving, confirms only once they have returned, so the shard's next owner never starts beside
  // them.
  // (each shard's stops: two may overlap, after the shard came back at a later epoch)
  const stopping = new Map<number, Set<Deferred.Deferred<void>>>()
  // (registered as the shards are released, before anything yields: a repeat may come at any later point.
  // `unmark`: the shards' marks as releasing, set before they stopped being served, cleared with the stop)
  const stopRevoked = (
    shards: ReadonlyArray<number>,
    unmark: () => void,
    stop: Effect.Effect<void>
  ): Effect.Effect<void> => {
    if (shards.length === 0) return stop
    const done = Deferred.unsafeMake<void>(FiberId.none)
    for (const shard of shards) {
      const stops = stopping.get(shard)
      if (stops === undefined) stopping.set(shard, new Set([done]))
      else stops.add(done)
    }
    return Effect.ensuring(
      stop,
      Effect.sync(() => {
        unmark()
        for (const shard of shards) {
          const stops = stopping.get(shard)
          stops?.delete(done)
          if (stops?.size === 0) stopping.delete(shard)
        }
        Deferred.unsafeDone(done, Effect.void)
      })
    )
  }
  const stillStopping = (pending: Iterable<Deferred.Deferred<void>>): Effect.Effect<void> =>
    Effect.forEach(new Set(pending), Deferred.await, { concurrency: "unbounded", discard: true })

  const unassign = (
    shards: Iterable<number>,
    epochs: ReadonlyMap<number, number> | undefined
  ): Effect.Effect<void, PodUnavailableException> =>
    // (uninterruptible until the stop's clean-up is in place: a caller interrupted in between would leave its
    // shards marked as releasing, and a repeat waiting for a stop that never runs)
    Effect.uninterruptibleMask((restore) => Effect.suspend(() => {
      const stopped: Array<number> = []
      const late: Array<number> = []
      const released: Array<readonly [number, number]> = []
      const regressions: Array<ShardAssignment> = []
      const pending: Array<Deferred.Deferred<void>> = []
      for (const shard of new Set(shards)) {
        if (!state.inRange(shard)) continue
        const epoch = epochs?.get(shard) ?? heldEpoch[shard]!
        if (regressed(shard, epoch)) {
          regressions.push(new ShardAssignment({ shardId: shard, pod: null, epoch }))
          continue
        }
        if (epoch > releasedEpoch[shard]!) releasedEpoch[shard] = epoch
        if (heldEpoch[shard]! !== 0 && heldEpoch[shard]! <= epoch) {
          released.push([shard, heldEpoch[shard]!])
          stopped.push(shard)
          if (pastServing(state, shard)) late.push(shard)
        }
        // (held again or not: an earlier stop of the shard may still run, e.g. the watchdog's drop before a
        // grant gave the shard back at the same epoch; its stop hooks and singletons' clean-up are not this
        // stop's, and the confirmation waits for them too)
        const running = stopping.get(shard)
        if (running !== undefined) pending.push(...running)
        const route = state.routing[shard]
        if (route?.podKey === state.selfKey) state.routing[shard] = { pod: undefined, podKey: "", epoch: route.epoch }
      }
      // Marked releasing (a hand-off: their fences stay this pod's until it confirms), then no longer served,
      // in one step: what the pod's work there records at any moment of the stop is its own.
      const unmark = releasing.mark(released)
      for (const shard of stopped) state.setHeld(shard, 0)
      // Confirm only once the entities have stopped, and never a regressed revocation. (The revoked shards'
      // fences stay this pod's until it confirms: a hand-off; a regressed one was lost.)
      // (a shard whose lease ends within entityTerminationTimeout is stopped as lost: `pastServing`)
      const handedOff = late.length === 0 ? stopShards(stopped, "handoff") : Effect.zip(
        stopShards(stopped.filter((shard) => !late.includes(shard)), "handoff"),
        stopShards(late, "lost"),
        { concurrent: true }
      )
      const revoked = pending.length === 0
        ? handedOff
        : Effect.zip(handedOff, stillStopping(pending), { concurrent: true })
      const stop = Effect.zipRight(
        dropRegressed(state, regressions, "revocation"),
        regressions.length === 0
          ? revoked
          : Effect.zip(
            revoked,
            stopShards(regressions.map((assignment) => assignment.shardId), "lost"),
            { concurrent: true }
          )
      )
      // The stop runs in a fiber of its own: a caller interrupted (the manager stopped mid-rebalance, a
      // transport that gave up without running the call detached) ends only its wait. Interrupted with it, the
      // shard stop hooks would end early (the workflow engine's drain cut short), the shards would stop being
      // releasing and the next heartbeat would confirm their release while what was cut off may still run.
      const detached = Effect.flatMap(
        Effect.forkDaemon(stopRevoked(stopped, unmark, Effect.interruptible(stop))),
        (fiber) => restore(Fiber.join(fiber))
      )
      return regressions.length === 0
        ? detached
        : Effect.zipRight(detached, Effect.fail(new PodUnavailableException({ podAddress: state.services.self })))
    }))

  const stopEverything = (leaving: () => void = () => {}) =>
    stopEverythingOf(
      state,
      singletons,
      releasing,
      stopOwnWork,
      () => stillStopping(Array.from(stopping.values(), (stops) => Array.from(stops)).flat()),
      stopRevoked,
      leaving
    )

  return {
    takeShard,
    applyGrant,
    dropAllShards,
    dropShards,
    startDroppingShards,
    assign,
    unassign,
    stopEverything,
    releasingShardEpochs: () => releasing.snapshot(),
    stopRunning: (shard) => stopping.has(shard)
  }
}
