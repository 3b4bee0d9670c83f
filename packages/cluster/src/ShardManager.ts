/**
 * The shard manager: the only authority on which pod owns which shard. It grants leases with heartbeats,
 * gives every new assignment a higher epoch, moves shards gracefully (the old owner confirms it stopped
 * them before the new owner gets them), and reassigns a silent pod's shards only once its lease has
 * certainly ended.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Persister from "./internal/persister.js"
import * as Rebalance from "./internal/rebalance.js"
import * as ManagerConfig from "./ManagerConfig.js"
import { Pod } from "./Pod.js"
import { PodAddress } from "./PodAddress.js"
import { Pods } from "./Pods.js"
import { PodsHealth } from "./PodsHealth.js"
import { type HeartbeatRequest, LeaseGrant, ShardAssignment } from "./ShardAssignment.js"
import { ShardId } from "./ShardId.js"
import * as ShardingEvent from "./ShardingEvent.js"
import { PodNoLongerRegisteredException } from "./ShardingException.js"
import { type SaveResult, Storage, type StorageException } from "./Storage.js"
import { restartOnDefect } from "./Supervise.js"

/**
 * The manager's API. The 2024 members are kept; `heartbeat` (lease renewal) and `getShardAssignments`
 * (the table with epochs) are additions.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardManager {
  readonly getShardingEvents: Stream.Stream<ShardingEvent.ShardingEvent>
  readonly register: (pod: Pod) => Effect.Effect<void>
  readonly unregister: (podAddress: PodAddress) => Effect.Effect<void>
  /**
   * Another pod could not reach `podAddress`. The manager checks the pod's lease: a report never gets a pod
   * declared dead while its lease may still run.
   */
  readonly notifyUnhealthyPod: (podAddress: PodAddress) => Effect.Effect<void>
  readonly checkAllPodsHealth: Effect.Effect<void>
  readonly getAssignments: Effect.Effect<HashMap.HashMap<ShardId, Option.Option<PodAddress>>>
  readonly rebalance: (immediately: boolean) => Effect.Effect<void>
  readonly persistPods: Effect.Effect<void>
  readonly heartbeat: (request: HeartbeatRequest) => Effect.Effect<LeaseGrant, PodNoLongerRegisteredException>
  readonly getShardAssignments: Effect.Effect<ReadonlyArray<ShardAssignment>>
  /** The registered pods (those a broadcast must reach). */
  readonly getPods: Effect.Effect<ReadonlyArray<PodAddress>>
}

/**
 * @since 0.1.0
 * @category context
 */
export const ShardManager: Context.Tag<ShardManager, ShardManager> = Context.GenericTag<ShardManager>(
  "@effect-cluster/cluster/ShardManager"
)

/**
 * The pure assignment decisions, exported for tests and tools: `decideAssignmentsForUnassignedShards`,
 * `decideAssignmentsForUnbalancedShards`, `maxMovesPerRound`, `compareVersion`.
 *
 * @since 0.1.0
 * @category rebalancing
 */
export const RebalancePolicy = Rebalance

/**
 * A snapshot given to the pure rebalancing functions.
 *
 * @since 0.1.0
 * @category rebalancing
 */
export type RebalanceState = Rebalance.RebalanceState

/**
 * What a rebalancing round decided.
 *
 * @since 0.1.0
 * @category rebalancing
 */
export type RebalancePlan = Rebalance.RebalancePlan

interface PodEntry {
  pod: Pod
  /** Monotonic ms of the last lease grant (or registration, or manager start). */
  lastGrantAt: number
  /** When the manager may declare the pod dead: lastGrantAt + lease + margin, maybe delayed by PodsHealth. */
  deadline: number
  healthDelayed: boolean
}

const podKeyOf = (address: PodAddress): string => `${address.host}:${address.port}`

interface Grant {
  readonly key: string
  readonly address: PodAddress
  readonly shards: ReadonlyArray<number>
  readonly epochs: Map<number, number>
}

/** What one round did: shards it moved or handed out, and whether some step failed (retried later). */
interface RoundResult {
  readonly moved: number
  readonly failed: boolean
}

const noRound: RoundResult = { moved: 0, failed: false }

const refusedBy = (result: unknown): ReadonlyArray<number> =>
  typeof result === "object" && result !== null && Array.isArray((result as SaveResult).refused)
    ? (result as SaveResult).refused
    : []

const retryInMillisOf = (result: unknown): number | undefined => {
  const value = typeof result === "object" && result !== null ? (result as SaveResult).retryInMillis : undefined
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

/**
 * The manager's services and state, shared by its parts. owner/epoch are indexed by shard number; `owner`
 * is the intended owner, shown to pods only once persisted (shards in `unpersisted` look unowned until then).
 */
interface Core {
  readonly config: ManagerConfig.ManagerConfig
  readonly storage: Storage
  readonly health: PodsHealth
  readonly pods: Pods
  readonly events: PubSub.PubSub<ShardingEvent.ShardingEvent>
  readonly rebalanceLock: Effect.Semaphore
  /** A balancing round as soon as the loop can run one. */
  readonly balanceNow: Queue.Queue<void>
  readonly numberOfShards: number
  readonly leaseMillis: number
  readonly marginMillis: number
  readonly monotonicMillis: () => number
  readonly retried: <A>(effect: Effect.Effect<A, StorageException>, what: string) => Effect.Effect<A, StorageException>
  readonly inBackground: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<unknown>
  readonly podEntries: Map<string, PodEntry>
  readonly owner: Array<string | undefined>
  readonly epoch: Array<number>
  readonly releasing: Set<number>
  readonly unpersisted: Set<number>
  /**
   * Shards their owner confirmed it stopped (shard -> epoch released), until a write has ended their
   * database lease: a `LeasedStorage` moves a shard only once its lease is over or released.
   */
  readonly releasedPending: Map<number, number>
  readonly startedAt: number
  /** No shard is handed out before this (monotonic ms): a restarted manager waits out earlier leases. */
  readonly grantsFrom: number
}

const makeCore: Effect.Effect<
  Core,
  StorageException,
  Scope.Scope | ManagerConfig.ManagerConfig | Storage | PodsHealth | Pods
> = Effect.gen(function*() {
  const config = yield* ManagerConfig.ManagerConfig
  yield* ManagerConfig.validate(config).pipe(Effect.orDie)
  const storage = yield* Storage
  const clock = yield* Effect.clock
  const scope = yield* Effect.scope
  const numberOfShards = config.numberOfShards
  const leaseMillis = Duration.toMillis(config.leaseDuration)
  const marginMillis = Duration.toMillis(config.leaseMargin)
  const monotonicMillis = (): number => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
  // Bounded retries of every storage access (the 2024 `persistRetryInterval` / `persistRetryCount`).
  const retried = <A>(effect: Effect.Effect<A, StorageException>, what: string) =>
    effect.pipe(
      Effect.tapError((error) => Effect.logWarning(`storage: ${what} failed; retrying`, error)),
      Effect.retry({
        schedule: Schedule.intersect(Schedule.spaced(config.persistRetryInterval), Schedule.recurs(config.persistRetryCount)),
        // A manager fenced off by a standby stays fenced: retrying cannot help.
        while: (error) => !error.fenced
      })
    )
  const podEntries = new Map<string, PodEntry>()
  const owner: Array<string | undefined> = new Array(numberOfShards + 1)
  const epoch: Array<number> = new Array(numberOfShards + 1).fill(0)

  const startedAt = monotonicMillis()
  const [storedPods, storedAssignments, storedEpochs] = yield* retried(
    Effect.all([storage.getPods, storage.getAssignments, storage.getEpochs]),
    "reading the state"
  )
  for (const pod of HashMap.values(storedPods)) {
    // A restarted manager does not know when it last granted: count from now.
    podEntries.set(podKeyOf(pod.address), {
      pod,
      lastGrantAt: startedAt,
      deadline: startedAt + leaseMillis + marginMillis,
      healthDelayed: false
    })
  }
  for (const [shardId, maybePod] of storedAssignments) {
    if (shardId.value < 1 || shardId.value > numberOfShards) continue
    if (Option.isSome(maybePod) && podEntries.has(podKeyOf(maybePod.value))) {
      owner[shardId.value] = podKeyOf(maybePod.value)
    }
  }
  for (const [shardId, value] of storedEpochs) {
    if (shardId.value >= 1 && shardId.value <= numberOfShards) epoch[shardId.value] = value
  }
  // Storage with any state means an earlier manager may have granted leases that still run: no grant
  // before they have certainly ended. A fresh storage has never granted anything (grants are persisted
  // before they are published), so a new cluster gets its shards at once.
  const restarted = HashMap.size(storedPods) > 0 || epoch.some((value) => value > 0) ||
    Array.from(HashMap.values(storedAssignments)).some(Option.isSome)
  return {
    config,
    storage,
    health: yield* PodsHealth,
    pods: yield* Pods,
    events: yield* PubSub.unbounded<ShardingEvent.ShardingEvent>(),
    rebalanceLock: yield* Effect.makeSemaphore(1),
    balanceNow: yield* Queue.sliding<void>(1),
    numberOfShards,
    leaseMillis,
    marginMillis,
    monotonicMillis,
    retried,
    // Interruptible even when forked from a caller's finalizer (a pod unregistering as its scope closes):
    // a fiber inherits uninterruptibility, and the manager's scope could then not close until it ended.
    inBackground: (effect) => Effect.forkIn(Effect.interruptible(effect), scope),
    podEntries,
    owner,
    epoch,
    releasing: new Set<number>(),
    unpersisted: new Set<number>(),
    releasedPending: new Map<number, number>(),
    startedAt,
    grantsFrom: restarted ? startedAt + leaseMillis + marginMillis : startedAt
  }
})

const addressOf = (core: Core, key: string): PodAddress | undefined => core.podEntries.get(key)?.pod.address

const shardSet = (shards: Iterable<number>) => HashSet.fromIterable(Array.from(shards, (value) => new ShardId({ value })))

const assignmentsMap = (core: Core, visibleOnly: boolean): HashMap.HashMap<ShardId, Option.Option<PodAddress>> =>
  HashMap.fromIterable(
    Array.from({ length: core.numberOfShards }, (_, i) => {
      const key = visibleOnly && core.unpersisted.has(i + 1) ? undefined : core.owner[i + 1]
      return [new ShardId({ value: i + 1 }), Option.fromNullable(key === undefined ? undefined : addressOf(core, key))]
    })
  )

// Shards being handed off are shown as unowned, so no grant re-confirms them to their old owner; shards
// granted but not yet persisted too, so no pod acts on an epoch a crash could make the manager reissue.
const tableOf = (core: Core): Array<ShardAssignment> =>
  Array.from({ length: core.numberOfShards }, (_, i) => {
    const shard = i + 1
    const key = core.owner[shard]
    const hidden = key === undefined || core.releasing.has(shard) || core.unpersisted.has(shard)
    const address = hidden ? undefined : addressOf(core, key)
    return new ShardAssignment({ shardId: shard, pod: address ?? null, epoch: core.epoch[shard]! })
  })

/**
 * The one writer of the state: pods, then epochs, then assignments (an assignment never lands without its
 * epoch and its pod). A write that refused to move shards (their previous owner's database lease still
 * runs) takes them back from their new owner, and asks for a round when the first of them may move.
 */
const makePersistence = (core: Core): Effect.Effect<Persister.Persister<StorageException>, never, Scope.Scope> => {
  const { numberOfShards, owner, releasedPending, storage, unpersisted } = core
  const leaseTerms = { durationMillis: core.leaseMillis, marginMillis: core.marginMillis }
  // The earliest wake-up asked for by a refused write (monotonic ms), so refusals do not pile up sleepers.
  let wakeAt = Number.POSITIVE_INFINITY
  // When the last write attempt was sent (monotonic ms): the database counts a refusal's `retryInMillis`
  // from a moment just after it, so the wake-up is counted from there (plus a little, since a wake-up
  // that comes early costs a refused write), not from the end of the write.
  let sentAt = 0
  const cushionMillis = 25
  const wakeIn = (millis: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      const at = sentAt + millis + cushionMillis
      millis = Math.max(0, at - core.monotonicMillis())
      if (at >= wakeAt) return Effect.void
      wakeAt = at
      return Effect.asVoid(core.inBackground(
        Effect.sleep(Duration.millis(millis)).pipe(
          Effect.zipRight(Effect.sync(() => void (wakeAt = wakeAt === at ? Number.POSITIVE_INFINITY : wakeAt))),
          Effect.zipRight(Queue.offer(core.balanceNow, undefined))
        )
      ))
    })

  const afterWrite = (
    released: ReadonlyArray<{ shardId: number; epoch: number }>,
    written: ReadonlyArray<string | undefined>,
    result: unknown
  ): Effect.Effect<void> =>
    Effect.suspend(() => {
      for (const { epoch: value, shardId } of released) {
        if (releasedPending.get(shardId) === value) releasedPending.delete(shardId)
      }
      const withdrawn = refusedBy(result).filter((shard) => {
        if (shard < 1 || shard > numberOfShards || owner[shard] === undefined || owner[shard] !== written[shard]) return false
        owner[shard] = undefined
        unpersisted.delete(shard)
        return true
      })
      if (withdrawn.length === 0) return Effect.void
      const retryIn = retryInMillisOf(result)
      return Effect.logInfo(
        `shards ${withdrawn.join(",")} not moved yet: their previous owner's lease in the database has not ended`
      ).pipe(Effect.zipRight(retryIn === undefined ? Effect.void : wakeIn(retryIn)))
    })

  return Persister.make(Effect.suspend(() => {
    const podsNow = HashMap.fromIterable(Array.from(core.podEntries.values(), (entry) => [entry.pod.address, entry.pod]))
    const epochsNow = HashMap.fromIterable(
      Array.from({ length: numberOfShards }, (_, i) => [new ShardId({ value: i + 1 }), core.epoch[i + 1]!])
    )
    const assignmentsNow = assignmentsMap(core, false)
    const released = Array.from(releasedPending, ([shardId, epoch]) => ({ shardId, epoch }))
    const written = owner.slice()
    return core.retried(
      storage.saveAll !== undefined
        ? Effect.suspend(() => {
          sentAt = core.monotonicMillis()
          return storage.saveAll!({ pods: podsNow, epochs: epochsNow, assignments: assignmentsNow, released, lease: leaseTerms })
        })
        : storage.savePods(podsNow).pipe(
          Effect.zipRight(storage.saveEpochs(epochsNow)),
          Effect.zipRight(storage.saveAssignments(assignmentsNow))
        ),
      "saving the state"
    ).pipe(Effect.flatMap((result) => afterWrite(released, written, result)))
  }))
}

/**
 * Rebalancing: unassignments first (each old owner confirms it stopped the shards' entities), then
 * assignments with new epochs, persisted before anyone is told.
 */
const makeRebalancer = (core: Core, persister: Persister.Persister<StorageException>) => {
  const { epoch, events, owner, releasedPending, releasing, unpersisted } = core

  const unassignAll = (plan: Rebalance.RebalancePlan, failed: Set<number>): Effect.Effect<void> =>
    Effect.forEach(plan.unassignments, ([key, shards]) => {
      const address = addressOf(core, key)
      if (address === undefined) {
        for (const shard of shards) failed.add(shard)
        return Effect.void
      }
      const revoked = new Map(shards.map((shard) => [shard, epoch[shard]!] as const))
      for (const shard of shards) releasing.add(shard)
      return core.pods.unassignShards(address, shardSet(shards), revoked).pipe(
        Effect.matchEffect({
          onSuccess: () =>
            Effect.suspend(() => {
              for (const shard of shards) {
                releasing.delete(shard)
                if (owner[shard] === key) {
                  owner[shard] = undefined
                  releasedPending.set(shard, revoked.get(shard)!)
                }
              }
              return PubSub.publish(events, ShardingEvent.ShardsUnassigned(address, shardSet(shards)))
            }),
          onFailure: () =>
            Effect.sync(() => {
              for (const shard of shards) {
                releasing.delete(shard)
                failed.add(shard)
              }
            })
        })
      )
    }, { concurrency: "unbounded", discard: true })

  // New epochs and owners are recorded, persisted, and only then shown and pushed to their pods. A write
  // that fails (after its retries) or is cut short takes the grants back; their epochs stay used.
  const grantAll = (
    plan: Rebalance.RebalancePlan,
    failed: Set<number>
  ): Effect.Effect<{ readonly granted: number; readonly refused: number }, StorageException> =>
    Effect.suspend(() => {
      const grants: Array<Grant> = []
      for (const [key, shards] of plan.assignments) {
        const address = addressOf(core, key)
        const granted = shards.filter((shard) => !failed.has(shard) && owner[shard] === undefined)
        if (address === undefined || granted.length === 0) continue
        const epochs = new Map<number, number>()
        for (const shard of granted) {
          epoch[shard] = epoch[shard]! + 1
          owner[shard] = key
          unpersisted.add(shard)
          epochs.set(shard, epoch[shard]!)
        }
        grants.push({ key, address, shards: granted, epochs })
      }
      const none = { granted: 0, refused: 0 }
      if (grants.length === 0) return plan.unassignments.size > 0 ? Effect.as(persister.request, none) : Effect.succeed(none)
      const settle = (persisted: boolean) =>
        Effect.sync(() => {
          for (const grant of grants) {
            for (const shard of grant.shards) {
              if (unpersisted.delete(shard) && !persisted && owner[shard] === grant.key) owner[shard] = undefined
            }
          }
        })
      // Shown in the table and pushed in one continuation once durable, so readers of the table rarely
      // find an owner not yet told (it would refuse at an epoch it does not hold, and the sender retries).
      // A shard the storage refused to move (see `afterWrite`) is no longer its grant's: counted as failed.
      return persister.flush.pipe(
        Effect.onExit((exit) => settle(exit._tag === "Success")),
        Effect.zipRight(Effect.forEach(grants, publishGrant, { discard: true })),
        Effect.map(() => {
          const kept = grants.reduce((sum, grant) => sum + grant.shards.filter((shard) => owner[shard] === grant.key).length, 0)
          const all = grants.reduce((sum, grant) => sum + grant.shards.length, 0)
          return { granted: kept, refused: all - kept }
        })
      )
    })

  const publishGrant = (grant: Grant): Effect.Effect<void> => {
    const current = grant.shards.filter((shard) => owner[shard] === grant.key)
    if (current.length === 0) return Effect.void
    return PubSub.publish(events, ShardingEvent.ShardsAssigned(grant.address, shardSet(current))).pipe(
      Effect.zipRight(core.pods.assignShards(grant.address, shardSet(current), grant.epochs)),
      // The pod also learns its shards from its next heartbeat: a failed push only delays it.
      Effect.catchAll((error) => Effect.logDebug("assignShards push failed", error)),
      Effect.asVoid
    )
  }

  const executePlan = (plan: Rebalance.RebalancePlan): Effect.Effect<RoundResult> =>
    Effect.gen(function*() {
      const failed = new Set<number>()
      yield* unassignAll(plan, failed)
      const result = yield* grantAll(plan, failed).pipe(
        Effect.catchAll((error) =>
          Effect.as(Effect.logError("grants withdrawn: their assignment could not be persisted", error), undefined)
        )
      )
      return result === undefined
        ? { moved: 0, failed: true }
        : { moved: result.granted, failed: failed.size > 0 || result.refused > 0 }
    })

  const snapshot = (): Rebalance.RebalanceState => ({
    numberOfShards: core.numberOfShards,
    pods: Array.from(core.podEntries.entries(), ([key, entry]) => ({ key, version: entry.pod.version })),
    assignments: Array.from({ length: core.numberOfShards }, (_, i) => (releasing.has(i + 1) ? "~releasing" : owner[i + 1]))
  })

  const runRound = (immediately: boolean): Effect.Effect<RoundResult> =>
    core.rebalanceLock.withPermits(1)(Effect.gen(function*() {
      if (core.monotonicMillis() < core.grantsFrom) return noRound
      const first = yield* executePlan(Rebalance.decideAssignmentsForUnassignedShards(snapshot()))
      if (immediately) return first
      const second = yield* executePlan(Rebalance.decideAssignmentsForUnbalancedShards(snapshot(), core.config.rebalanceRate))
      return { moved: first.moved + second.moved, failed: first.failed || second.failed }
    }))

  return { runRound }
}

/** Pods joining, renewing, leaving and dying: registration, heartbeats, removal and the lease check. */
const makeMembership = (
  core: Core,
  persister: Persister.Persister<StorageException>,
  rebalance: (immediately: boolean) => Effect.Effect<void>
) => {
  const { epoch, events, leaseMillis, marginMillis, owner, podEntries, releasedPending, releasing, unpersisted } = core

  // `released`: the pod stopped everything on its shards before it left (a graceful unregistration).
  const removePod = (key: string, reason: string, released = false): Effect.Effect<void> =>
    Effect.suspend(() => {
      const entry = podEntries.get(key)
      if (entry === undefined) return Effect.void
      podEntries.delete(key)
      const freed: Array<number> = []
      for (let shard = 1; shard <= core.numberOfShards; shard++) {
        if (owner[shard] === key) {
          owner[shard] = undefined
          if (!unpersisted.delete(shard)) freed.push(shard)
          if (released) releasedPending.set(shard, epoch[shard]!)
        }
      }
      return Effect.logInfo(`pod ${key} removed: ${reason}`).pipe(
        Effect.zipRight(PubSub.publish(events, ShardingEvent.PodUnregistered(entry.pod.address))),
        Effect.zipRight(
          freed.length > 0
            ? PubSub.publish(events, ShardingEvent.ShardsUnassigned(entry.pod.address, shardSet(freed)))
            : Effect.void
        ),
        // Not awaited: a stale stored owner is the safe direction (a restarted manager waits for it).
        Effect.zipRight(persister.request),
        Effect.zipRight(core.inBackground(rebalance(true))),
        Effect.asVoid
      )
    })

  // Failure detection: a pod is declared dead only after its lease has certainly ended (last grant + lease
  // + margin on this clock); PodsHealth may delay that once by a lease period.
  const checkLeases: Effect.Effect<void> = Effect.gen(function*() {
    const now = core.monotonicMillis()
    for (const [key, entry] of Array.from(podEntries)) {
      if (now < entry.deadline) continue
      const alive = yield* core.health.isAlive(entry.pod.address)
      yield* PubSub.publish(events, ShardingEvent.PodHealthChecked(entry.pod.address))
      if (podEntries.get(key) !== entry || core.monotonicMillis() < entry.deadline) continue
      if (alive && !entry.healthDelayed) {
        entry.healthDelayed = true
        entry.deadline = entry.deadline + leaseMillis
        continue
      }
      yield* removePod(key, "lease expired without renewal")
    }
  })

  const register = (pod: Pod): Effect.Effect<void> =>
    Effect.gen(function*() {
      const key = podKeyOf(pod.address)
      const now = core.monotonicMillis()
      const existing = podEntries.get(key)
      if (existing !== undefined) {
        existing.pod = pod
        existing.lastGrantAt = now
        existing.deadline = now + leaseMillis + marginMillis
        existing.healthDelayed = false
      } else {
        podEntries.set(key, { pod, lastGrantAt: now, deadline: now + leaseMillis + marginMillis, healthDelayed: false })
      }
      yield* PubSub.publish(events, ShardingEvent.PodRegistered(pod.address))
      yield* persister.request
      // A round right away, so a new pod gets shards without waiting for the periodic round.
      yield* Queue.offer(core.balanceNow, undefined)
    })

  const heartbeat = (request: HeartbeatRequest): Effect.Effect<LeaseGrant, PodNoLongerRegisteredException> =>
    Effect.suspend(() => {
      const key = podKeyOf(request.podAddress)
      const entry = podEntries.get(key)
      if (entry === undefined) {
        return Effect.fail(new PodNoLongerRegisteredException({ podAddress: request.podAddress }))
      }
      const now = core.monotonicMillis()
      entry.lastGrantAt = now
      entry.deadline = now + leaseMillis + marginMillis
      entry.healthDelayed = false
      if (entry.pod.version !== request.version) entry.pod = new Pod({ address: entry.pod.address, version: request.version })
      // Releases the pod confirms (e.g. a hand-off whose answer this manager never saw).
      const confirmed: Array<number> = []
      for (const { shardId, epoch: released } of request.released) {
        if (owner[shardId] === key && epoch[shardId] === released && !releasing.has(shardId)) {
          owner[shardId] = undefined
          releasedPending.set(shardId, released)
          confirmed.push(shardId)
        }
      }
      const grant = new LeaseGrant({ leaseDurationMillis: leaseMillis, assignments: tableOf(core) })
      if (confirmed.length === 0) return Effect.succeed(grant)
      // The renewal never waits for storage: a slow database must not cost pods their leases.
      return PubSub.publish(events, ShardingEvent.ShardsUnassigned(request.podAddress, shardSet(confirmed))).pipe(
        Effect.zipRight(persister.request),
        Effect.zipRight(core.inBackground(rebalance(true))),
        Effect.as(grant)
      )
    })

  return { removePod, checkLeases, register, heartbeat }
}

/**
 * Builds the manager (scoped: its background loops end with the scope). It restores pods, assignments and
 * epochs from `Storage` and keeps them. Every new assignment is persisted before any pod can see it (a
 * heartbeat's table shows it unowned until then). A manager started on storage that already holds state
 * (a restart) hands out no shard before `leaseDuration + leaseMargin` from its start, and reassigns a
 * silent pod's shards no earlier, since it cannot know the earlier grants. On a `LeasedStorage` each grant
 * also sets the shard's lease in the database, and a write gives a shard to another pod only once that
 * lease has been over for `leaseMargin` on the database's clock or its owner released it (a refused grant
 * is withdrawn, and granted again in a round held when the database says the first refused shard may
 * move), so pods renewing there keep their shards while no manager runs. It dies with
 * `InvalidConfigurationException` on a storage without durable epochs (`Storage.make` without them).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  ShardManager,
  StorageException,
  Scope.Scope | ManagerConfig.ManagerConfig | Storage | PodsHealth | Pods
> = Effect.gen(function*() {
  const core = yield* makeCore
  const { config, podEntries } = core
  const persister = yield* makePersistence(core)
  const { runRound } = makeRebalancer(core, persister)
  const rebalance = (immediately: boolean): Effect.Effect<void> => Effect.asVoid(runRound(immediately))
  const membership = makeMembership(core, persister, rebalance)

  // Balancing: a round on each registration and every `rebalanceInterval`; while rounds still move shards,
  // the next follows `rebalanceFollowUpInterval` later, so a joining pod gets its share within seconds with
  // at most `maxMovesPerRound` shards in flight at a time. A failed step is retried after
  // `rebalanceRetryInterval` (a move the database refused, earlier: when it says the lease has ended).
  let pause = config.rebalanceInterval
  const balancing: Effect.Effect<void> = Effect.gen(function*() {
    yield* Queue.take(core.balanceNow).pipe(Effect.timeoutOption(pause))
    const round = yield* runRound(false)
    pause = round.failed
      ? config.rebalanceRetryInterval
      : round.moved > 0
      ? config.rebalanceFollowUpInterval
      : config.rebalanceInterval
  })
  yield* Effect.forkScoped(
    restartOnDefect("the shard manager's balancing", Effect.forever(balancing)).pipe(
      Effect.annotateLogs({ fiber: "shard-manager-rebalance" })
    )
  )

  // The lease check wakes at the earliest deadline, so a dead pod's shards move as soon as its lease +
  // margin has passed.
  yield* Effect.forkScoped(
    restartOnDefect("the shard manager's lease check", Effect.forever(Effect.suspend(() => {
      let next = Number.POSITIVE_INFINITY
      for (const entry of podEntries.values()) next = Math.min(next, entry.deadline)
      const now = core.monotonicMillis()
      const wait = next === Number.POSITIVE_INFINITY ? core.leaseMillis + core.marginMillis : Math.max(1, next - now)
      return Effect.zipRight(Effect.sleep(Duration.millis(wait)), membership.checkLeases)
    }))).pipe(Effect.annotateLogs({ fiber: "shard-manager-leases" }))
  )

  const manager: ShardManager = {
    getShardingEvents: Stream.fromPubSub(core.events),
    register: membership.register,
    unregister: (address) => membership.removePod(podKeyOf(address), "unregistered", true),
    notifyUnhealthyPod: (address) =>
      podEntries.has(podKeyOf(address))
        ? Effect.zipRight(PubSub.publish(core.events, ShardingEvent.PodHealthChecked(address)), membership.checkLeases)
        : Effect.void,
    checkAllPodsHealth: membership.checkLeases,
    getAssignments: Effect.sync(() => assignmentsMap(core, true)),
    rebalance,
    persistPods: Effect.ignore(persister.flush),
    heartbeat: membership.heartbeat,
    getShardAssignments: Effect.sync(() => tableOf(core)),
    getPods: Effect.sync(() => Array.from(podEntries.values(), (entry) => entry.pod.address))
  }

  // Hand out shards unassigned at start (a fresh cluster at once; after a restart once earlier leases ended).
  yield* Effect.forkScoped(
    Effect.sleep(Duration.millis(core.grantsFrom - core.startedAt)).pipe(
      Effect.zipRight(Queue.offer(core.balanceNow, undefined))
    )
  )
  return manager
})

/**
 * The manager as a scoped layer (the 2024 requirements).
 *
 * @since 0.1.0
 * @category layers
 */
export const live: Layer.Layer<
  ShardManager,
  StorageException,
  ManagerConfig.ManagerConfig | Storage | PodsHealth | Pods
> = Layer.scoped(ShardManager, make)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = live
