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
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
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
import { Storage } from "./Storage.js"

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

/**
 * Builds the manager (scoped: its background loops end with the scope). It restores pods, assignments and
 * epochs from `Storage` and keeps them: after a restart it reassigns a pod's shards only if the pod stays
 * silent for `leaseDuration + leaseMargin` from the restart, since it cannot know the earlier grants.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  ShardManager,
  never,
  Scope.Scope | ManagerConfig.ManagerConfig | Storage | PodsHealth | Pods
> = Effect.gen(function*() {
  const config = yield* ManagerConfig.ManagerConfig
  yield* ManagerConfig.validate(config).pipe(Effect.orDie)
  const storage = yield* Storage
  const health = yield* PodsHealth
  const pods = yield* Pods
  const clock = yield* Effect.clock
  const events = yield* PubSub.unbounded<ShardingEvent.ShardingEvent>()
  const rebalanceLock = yield* Effect.makeSemaphore(1)
  const scope = yield* Effect.scope

  const numberOfShards = config.numberOfShards
  const leaseMillis = Duration.toMillis(config.leaseDuration)
  const marginMillis = Duration.toMillis(config.leaseMargin)
  const monotonicMillis = (): number => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000

  // --- State, in one place. owner/epoch indexed by shard number.
  const podEntries = new Map<string, PodEntry>()
  const owner: Array<string | undefined> = new Array(numberOfShards + 1)
  const epoch: Array<number> = new Array(numberOfShards + 1).fill(0)
  const releasing = new Set<number>()

  const startedAt = monotonicMillis()
  const storedPods = yield* storage.getPods
  const storedAssignments = yield* storage.getAssignments
  const storedEpochs = yield* storage.getEpochs
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

  const addressOf = (key: string): PodAddress | undefined => podEntries.get(key)?.pod.address
  const shardSet = (shards: Iterable<number>) =>
    HashSet.fromIterable(Array.from(shards, (value) => new ShardId({ value })))

  const assignmentsMap = (): HashMap.HashMap<ShardId, Option.Option<PodAddress>> =>
    HashMap.fromIterable(
      Array.from({ length: numberOfShards }, (_, i) => {
        const key = owner[i + 1]
        return [new ShardId({ value: i + 1 }), Option.fromNullable(key === undefined ? undefined : addressOf(key))]
      })
    )

  // Shards being handed off are shown as unowned, so no grant re-confirms them to their old owner.
  const table = (): Array<ShardAssignment> =>
    Array.from({ length: numberOfShards }, (_, i) => {
      const shard = i + 1
      const key = owner[shard]
      const address = key === undefined || releasing.has(shard) ? undefined : addressOf(key)
      return new ShardAssignment({ shardId: shard, pod: address ?? null, epoch: epoch[shard]! })
    })

  // Epochs first: an epoch is durable before any pod can act on it, so a restarted manager never reissues it.
  const persistAssignments = Effect.suspend(() =>
    storage.saveEpochs(
      HashMap.fromIterable(Array.from({ length: numberOfShards }, (_, i) => [new ShardId({ value: i + 1 }), epoch[i + 1]!]))
    ).pipe(Effect.zipRight(storage.saveAssignments(assignmentsMap())))
  )
  const persistPods = Effect.suspend(() =>
    storage.savePods(HashMap.fromIterable(Array.from(podEntries.values(), (entry) => [entry.pod.address, entry.pod])))
  )

  const snapshot = (): Rebalance.RebalanceState => ({
    numberOfShards,
    pods: Array.from(podEntries.entries(), ([key, entry]) => ({ key, version: entry.pod.version })),
    assignments: Array.from({ length: numberOfShards }, (_, i) => (releasing.has(i + 1) ? "~releasing" : owner[i + 1]))
  })

  const removePod = (key: string, reason: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const entry = podEntries.get(key)
      if (entry === undefined) return Effect.void
      podEntries.delete(key)
      const freed: Array<number> = []
      for (let shard = 1; shard <= numberOfShards; shard++) {
        if (owner[shard] === key) {
          owner[shard] = undefined
          freed.push(shard)
        }
      }
      return Effect.logInfo(`pod ${key} removed: ${reason}`).pipe(
        Effect.zipRight(PubSub.publish(events, ShardingEvent.PodUnregistered(entry.pod.address))),
        Effect.zipRight(
          freed.length > 0
            ? PubSub.publish(events, ShardingEvent.ShardsUnassigned(entry.pod.address, shardSet(freed)))
            : Effect.void
        ),
        Effect.zipRight(persistPods),
        Effect.zipRight(persistAssignments),
        Effect.zipRight(Effect.forkIn(rebalance(true), scope)),
        Effect.asVoid
      )
    })

  // --- Rebalancing: unassignments first (each old owner confirms it stopped the shards' entities), then
  // assignments with new epochs, persisted before the new owner is told.
  const executePlan = (plan: Rebalance.RebalancePlan): Effect.Effect<void> =>
    Effect.gen(function*() {
      const failed = new Set<number>()
      yield* Effect.forEach(plan.unassignments, ([key, shards]) => {
        const address = addressOf(key)
        if (address === undefined) {
          for (const shard of shards) failed.add(shard)
          return Effect.void
        }
        const revoked = new Map(shards.map((shard) => [shard, epoch[shard]!] as const))
        for (const shard of shards) releasing.add(shard)
        return pods.unassignShards(address, shardSet(shards), revoked).pipe(
          Effect.matchEffect({
            onSuccess: () =>
              Effect.suspend(() => {
                for (const shard of shards) {
                  releasing.delete(shard)
                  if (owner[shard] === key) owner[shard] = undefined
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

      const notified: Array<Effect.Effect<void>> = []
      for (const [key, shards] of plan.assignments) {
        const address = addressOf(key)
        const granted = shards.filter((shard) => !failed.has(shard) && owner[shard] === undefined)
        if (address === undefined || granted.length === 0) continue
        const epochs = new Map<number, number>()
        for (const shard of granted) {
          epoch[shard] = epoch[shard]! + 1
          owner[shard] = key
          epochs.set(shard, epoch[shard]!)
        }
        notified.push(
          PubSub.publish(events, ShardingEvent.ShardsAssigned(address, shardSet(granted))).pipe(
            Effect.zipRight(pods.assignShards(address, shardSet(granted), epochs)),
            // The pod also learns its shards from its next heartbeat: a failed push only delays it.
            Effect.catchAll((error) => Effect.logDebug("assignShards push failed", error)),
            Effect.asVoid
          )
        )
      }
      if (notified.length > 0 || plan.unassignments.size > 0) yield* persistAssignments
      yield* Effect.all(notified, { concurrency: "unbounded", discard: true })
    })

  const rebalance = (immediately: boolean): Effect.Effect<void> =>
    rebalanceLock.withPermits(1)(Effect.gen(function*() {
      yield* executePlan(Rebalance.decideAssignmentsForUnassignedShards(snapshot()))
      if (!immediately) {
        yield* executePlan(Rebalance.decideAssignmentsForUnbalancedShards(snapshot(), config.rebalanceRate))
      }
    }))

  // --- Failure detection: a pod is declared dead only after its lease has certainly ended
  // (last grant + lease + margin on this clock); PodsHealth may delay that once by a lease period.
  const checkLeases: Effect.Effect<void> = Effect.gen(function*() {
    const now = monotonicMillis()
    for (const [key, entry] of Array.from(podEntries)) {
      if (now < entry.deadline) continue
      const alive = yield* health.isAlive(entry.pod.address)
      yield* PubSub.publish(events, ShardingEvent.PodHealthChecked(entry.pod.address))
      if (podEntries.get(key) !== entry || monotonicMillis() < entry.deadline) continue
      if (alive && !entry.healthDelayed) {
        entry.healthDelayed = true
        entry.deadline = entry.deadline + leaseMillis
        continue
      }
      yield* removePod(key, "lease expired without renewal")
    }
  })

  yield* Effect.forkScoped(
    Effect.forever(Effect.suspend(() => {
      let next = Number.POSITIVE_INFINITY
      for (const entry of podEntries.values()) next = Math.min(next, entry.deadline)
      const now = monotonicMillis()
      const wait = next === Number.POSITIVE_INFINITY ? leaseMillis + marginMillis : Math.max(1, next - now)
      return Effect.zipRight(Effect.sleep(Duration.millis(wait)), checkLeases)
    })).pipe(Effect.annotateLogs({ fiber: "shard-manager-leases" }))
  )
  yield* Effect.forkScoped(
    Effect.forever(Effect.zipRight(Effect.sleep(config.rebalanceInterval), rebalance(false))).pipe(
      Effect.annotateLogs({ fiber: "shard-manager-rebalance" })
    )
  )

  const register = (pod: Pod): Effect.Effect<void> =>
    Effect.gen(function*() {
      const key = podKeyOf(pod.address)
      const now = monotonicMillis()
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
      yield* persistPods
      // One round right away, so a new pod gets shards without waiting for the periodic round.
      yield* Effect.forkIn(rebalance(false), scope)
    })

  const heartbeat = (request: HeartbeatRequest): Effect.Effect<LeaseGrant, PodNoLongerRegisteredException> =>
    Effect.suspend(() => {
      const key = podKeyOf(request.podAddress)
      const entry = podEntries.get(key)
      if (entry === undefined) {
        return Effect.fail(new PodNoLongerRegisteredException({ podAddress: request.podAddress }))
      }
      const now = monotonicMillis()
      entry.lastGrantAt = now
      entry.deadline = now + leaseMillis + marginMillis
      entry.healthDelayed = false
      if (entry.pod.version !== request.version) entry.pod = new Pod({ address: entry.pod.address, version: request.version })
      // Releases the pod confirms (e.g. a hand-off whose answer this manager never saw).
      const confirmed: Array<number> = []
      for (const { shardId, epoch: released } of request.released) {
        if (owner[shardId] === key && epoch[shardId] === released && !releasing.has(shardId)) {
          owner[shardId] = undefined
          confirmed.push(shardId)
        }
      }
      const grant = new LeaseGrant({ leaseDurationMillis: leaseMillis, assignments: table() })
      if (confirmed.length === 0) return Effect.succeed(grant)
      return PubSub.publish(events, ShardingEvent.ShardsUnassigned(request.podAddress, shardSet(confirmed))).pipe(
        Effect.zipRight(persistAssignments),
        Effect.zipRight(Effect.forkIn(rebalance(true), scope)),
        Effect.as(grant)
      )
    })

  const manager: ShardManager = {
    getShardingEvents: Stream.fromPubSub(events),
    register,
    unregister: (address) => removePod(podKeyOf(address), "unregistered"),
    notifyUnhealthyPod: (address) =>
      podEntries.has(podKeyOf(address))
        ? Effect.zipRight(PubSub.publish(events, ShardingEvent.PodHealthChecked(address)), checkLeases)
        : Effect.void,
    checkAllPodsHealth: checkLeases,
    getAssignments: Effect.sync(assignmentsMap),
    rebalance,
    persistPods,
    heartbeat,
    getShardAssignments: Effect.sync(table),
    getPods: Effect.sync(() => Array.from(podEntries.values(), (entry) => entry.pod.address))
  }

  // Hand out shards that are unassigned at start (a fresh cluster, or shards of pods gone while we were down).
  yield* Effect.forkScoped(rebalance(true))
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
  never,
  ManagerConfig.ManagerConfig | Storage | PodsHealth | Pods
> = Layer.scoped(ShardManager, make)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = live
