/**
 * Where the shard manager keeps the pods, the assignments and the shard epochs, so that a restarted
 * manager keeps a healthy cluster as it was and never hands out an epoch twice.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Pod } from "./Pod.js"
import type { PodAddress } from "./PodAddress.js"
import type { ShardId } from "./ShardId.js"
import { InvalidConfigurationException } from "./ShardingException.js"

/**
 * A read or write of the storage failed (a database error, a lost connection). The manager retries writes
 * `persistRetryCount` times, `persistRetryInterval` apart; a grant whose write never lands is never
 * published.
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageException extends Schema.TaggedError<StorageException>()(
  "StorageException",
  {
    reason: Schema.String,
    cause: Schema.optional(Schema.Defect),
    /** A write refused because its manager lost the manager lease (a standby took over): never retried. */
    fenced: Schema.optionalWith(Schema.Boolean, { default: () => false })
  }
) {}

/**
 * The manager's persistent state. The 2024 members (`getAssignments`, `saveAssignments`,
 * `assignmentsStream`, `getPods`, `savePods`) are kept, with an error channel (`StorageException`; a 2024
 * implementation that cannot fail still fits); `getEpochs`/`saveEpochs` are additions: the manager saves a
 * shard's new epoch before announcing it, so epochs must be as durable as the assignments.
 *
 * @since 0.1.0
 * @category models
 */
export interface Storage {
  readonly getAssignments: Effect.Effect<HashMap.HashMap<ShardId, Option.Option<PodAddress>>, StorageException>
  readonly saveAssignments: (
    assignments: HashMap.HashMap<ShardId, Option.Option<PodAddress>>
  ) => Effect.Effect<void, StorageException>
  readonly assignmentsStream: Stream.Stream<HashMap.HashMap<ShardId, Option.Option<PodAddress>>, StorageException>
  readonly getPods: Effect.Effect<HashMap.HashMap<PodAddress, Pod>, StorageException>
  readonly savePods: (pods: HashMap.HashMap<PodAddress, Pod>) => Effect.Effect<void, StorageException>
  readonly getEpochs: Effect.Effect<HashMap.HashMap<ShardId, number>, StorageException>
  readonly saveEpochs: (epochs: HashMap.HashMap<ShardId, number>) => Effect.Effect<void, StorageException>
  /**
   * Optional: pods, epochs and assignments in one transaction (the manager uses it when present, so an
   * assignment is never stored without its epoch).
   */
  readonly saveAll?: ((state: StorageState) => Effect.Effect<void | SaveResult, StorageException>) | undefined
}

/**
 * The terms of the database leases a manager grants: a new owner's lease runs `durationMillis` from the
 * write (on the database's clock), and a shard whose lease has not been over for `marginMillis` is never
 * given to another pod.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseTerms {
  readonly durationMillis: number
  readonly marginMillis: number
}

/**
 * What a `saveAll` of a `LeasedStorage` did: the shards it did not give to their new owner (nor bump the
 * epoch of), because the previous owner's lease in the database had not yet ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface SaveResult {
  readonly refused: ReadonlyArray<number>
  /**
   * When some shards were refused: in how many milliseconds (on the database's clock, from the write) the
   * first of them may move, i.e. lease end + margin minus now, where the lease end is the latest among the
   * refused shards whose leases end within a second of the earliest (shards renewed together by one pod
   * end together, give or take a renewal in flight: one write then moves them all). The manager tries again
   * then instead of after `rebalanceRetryInterval`.
   */
  readonly retryInMillis?: number | undefined
}

/**
 * Everything the manager saves at once.
 *
 * @since 0.1.0
 * @category models
 */
export interface StorageState {
  readonly pods: HashMap.HashMap<PodAddress, Pod>
  readonly epochs: HashMap.HashMap<ShardId, number>
  readonly assignments: HashMap.HashMap<ShardId, Option.Option<PodAddress>>
  /**
   * Shards whose owner confirmed it stopped them, at the epoch it held: their database lease ends now, so
   * they may move at once (applied before the assignments, in the same transaction).
   */
  readonly released?: ReadonlyArray<HeldShard> | undefined
  /** Lease terms for the shards this write gives to a new owner (none: they get no database lease). */
  readonly lease?: LeaseTerms | undefined
}

/**
 * A shard a pod holds, as storage records it.
 *
 * @since 0.1.0
 * @category models
 */
export interface HeldShard {
  readonly shardId: number
  readonly epoch: number
}

/**
 * The manager lease row: which manager process is active (`holder`), since when (`term`, the fencing token:
 * it grows on every take-over), and how often it renewed (`renewals`; a standby that sees it unchanged for a
 * lease period on its own clock may take over).
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagerLease {
  readonly holder: string
  readonly term: number
  readonly renewals: number
}

/**
 * A storage shared by several processes: the manager's `Storage`, plus pod incarnations and leases, and
 * the manager lease that keeps one manager active among standbys. Every method is one conditional
 * statement (or one transaction), so two processes racing on it cannot both win.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeasedStorage extends Storage {
  /**
   * Pods, epochs and assignments in one transaction. A shard moves to another pod (and its epoch grows)
   * only if its database lease has been over for `lease.marginMillis` (or was released): the new owner
   * and the epoch are written by one conditional statement; refused shards keep their row as it was.
   */
  readonly saveAll: (state: StorageState) => Effect.Effect<SaveResult, StorageException>
  /**
   * Records a pod process start: the pod's row gets this `incarnation` (a new one per process start), so a
   * restarted process on the same host:port is a new pod. Shards stored for the address keep the earlier
   * incarnation: the new process does not hold them.
   */
  readonly registerPod: (pod: Pod, incarnation: string) => Effect.Effect<void, StorageException>
  /**
   * Renews a pod's lease if `incarnation` is still the pod's (compare-and-set); returns the shards stored
   * for that incarnation with their epochs, or `None` when the pod was removed or restarted since.
   */
  readonly renewPodLease: (
    address: PodAddress,
    incarnation: string
  ) => Effect.Effect<Option.Option<ReadonlyArray<HeldShard>>, StorageException>
  /**
   * Renews a pod's database leases on the shards it holds, in one conditional statement: a shard's lease
   * runs `leaseMillis` from now (the database's clock) if its row still names this pod at `epoch`, the
   * pod's row has this `incarnation` (a restarted or removed process renews nothing), and the lease has not
   * ended (a lapsed lease is not revived). Returns the shards renewed.
   */
  readonly renewShardLeases: (
    address: PodAddress,
    incarnation: string,
    held: ReadonlyArray<HeldShard>,
    leaseMillis: number
  ) => Effect.Effect<ReadonlyArray<number>, StorageException>
  /**
   * Whether `address` (incarnation `incarnation`) still holds `shardId` at `epoch`: the check a fenced
   * write makes inside its own transaction.
   */
  readonly holdsShard: (
    address: PodAddress,
    incarnation: string,
    shardId: number,
    epoch: number
  ) => Effect.Effect<boolean, StorageException>
  readonly getManagerLease: Effect.Effect<Option.Option<ManagerLease>, StorageException>
  /**
   * Takes the manager lease for `holder` if it is still as `observed` (none: nobody ever held it), with
   * the next term; returns the new term, or `None` when another process changed it first.
   */
  readonly acquireManagerLease: (
    holder: string,
    observed: Option.Option<ManagerLease>
  ) => Effect.Effect<Option.Option<number>, StorageException>
  /** Renews the lease of `holder` at `term`; `false` means it was taken over (deposed). */
  readonly renewManagerLease: (holder: string, term: number) => Effect.Effect<boolean, StorageException>
  /**
   * The same storage whose writes succeed only while `holder` holds the manager lease at `term`; a deposed
   * manager's writes fail with a `StorageException` marked `fenced` and change nothing.
   */
  readonly fencedBy: (holder: string, term: number) => Storage & Pick<LeasedStorage, "saveAll">
}

/**
 * @since 0.1.0
 * @category context
 */
export const Storage: Context.Tag<Storage, Storage> = Context.GenericTag<Storage>("@effect-cluster/cluster/Storage")

/**
 * The storage a pod renews its own leases in (optional: a pod without it renews through the manager only).
 * With it, a pod registers its incarnation in the database and renews its shards' leases there every
 * `leaseRenewalInterval`, so it keeps serving while the shard manager is down.
 *
 * @since 0.1.0
 * @category context
 */
export const PodLeases: Context.Tag<PodLeases, LeasedStorage> = Context.GenericTag<PodLeases, LeasedStorage>(
  "@effect-cluster/cluster/PodLeases"
)

/**
 * The identifier of the `PodLeases` service.
 *
 * @since 0.1.0
 * @category context
 */
export interface PodLeases {
  readonly _: unique symbol
}

/**
 * Builds a storage. A 2024 implementation without `getEpochs`/`saveEpochs` is accepted, but a shard manager
 * refuses to start on it (it dies with `InvalidConfigurationException`): its assignments may outlive the
 * process while epochs kept beside them would not, and a manager restarted in a new process would hand
 * out epochs from 0 again, below the ones pods still hold (two owners of one shard at one epoch).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  impl: Omit<Storage, "getEpochs" | "saveEpochs"> & Partial<Pick<Storage, "getEpochs" | "saveEpochs">>
): Storage => {
  if (impl.getEpochs !== undefined && impl.saveEpochs !== undefined) {
    return impl as Storage
  }
  const missing = Effect.die(
    new InvalidConfigurationException({
      reason: "this Storage keeps no durable epochs (no getEpochs/saveEpochs): a shard manager cannot run on it, " +
        "since a restarted manager would reissue epochs that pods still hold"
    })
  )
  return { ...impl, getEpochs: missing, saveEpochs: () => missing }
}

/**
 * Builds an in-memory `LeasedStorage` (the reference implementation of the storage contract).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<LeasedStorage> = Effect.gen(function*() {
  const assignments = yield* SubscriptionRef.make(HashMap.empty<ShardId, Option.Option<PodAddress>>())
  const pods = yield* Ref.make(HashMap.empty<PodAddress, Pod>())
  const epochs = yield* Ref.make(HashMap.empty<ShardId, number>())
  // Kept beside the 2024 maps: per address its incarnation and renewals; per shard the owner's incarnation.
  const incarnations = new Map<string, { incarnation: string; renewals: number }>()
  const shardIncarnations = new Map<number, string | undefined>()
  let managerLease: ManagerLease | undefined
  const keyOf = (address: PodAddress) => `${address.host}:${address.port}`

  const saveAssignments = (value: HashMap.HashMap<ShardId, Option.Option<PodAddress>>) =>
    Effect.flatMap(SubscriptionRef.get(assignments), (before) =>
      Effect.suspend(() => {
        for (const [shardId, owner] of value) {
          const previous = HashMap.get(before, shardId).pipe(Option.flatten, Option.map(keyOf))
          const next = Option.map(owner, keyOf)
          if (Option.getOrUndefined(previous) !== Option.getOrUndefined(next)) {
            shardIncarnations.set(shardId.value, Option.isSome(next) ? incarnations.get(next.value)?.incarnation : undefined)
          }
        }
        return SubscriptionRef.set(assignments, value)
      }))
  const saveEpochs = (value: HashMap.HashMap<ShardId, number>) =>
    Ref.update(epochs, (current) =>
      HashMap.reduce(value, current, (acc, epoch, shardId) =>
        HashMap.set(acc, shardId, Math.max(epoch, Option.getOrElse(HashMap.get(acc, shardId), () => 0)))))
  const savePods = (value: HashMap.HashMap<PodAddress, Pod>) => Ref.set(pods, value)
  // Database leases per shard: when each ends (the Clock's wall time, ms); none once released.
  const clock = yield* Effect.clock
  const leaseEnds = new Map<number, number>()
  const epochOf = (current: HashMap.HashMap<ShardId, number>, shardId: number) =>
    Option.getOrElse(HashMap.findFirst(current, (_, shard) => shard.value === shardId).pipe(Option.map(([, e]) => e)), () => 0)
  // The latest of the lease ends within a second of the earliest (see SaveResult.retryInMillis).
  const nextEnd = (ends: ReadonlyArray<number>) => {
    const first = Math.min(...ends)
    return Math.max(...ends.filter((end) => end <= first + 1_000))
  }
  const saveAll = (state: StorageState) =>
    Effect.gen(function*() {
      const now = clock.unsafeCurrentTimeMillis()
      const currentEpochs = yield* Ref.get(epochs)
      for (const released of state.released ?? []) {
        if (epochOf(currentEpochs, released.shardId) === released.epoch) leaseEnds.delete(released.shardId)
      }
      const table = yield* SubscriptionRef.get(assignments)
      const margin = state.lease?.marginMillis ?? 0
      let nextEpochs = state.epochs
      let nextAssignments = state.assignments
      const refused: Array<number> = []
      const refusedEnds: Array<number> = []
      for (const [shardId, next] of state.assignments) {
        const previous = HashMap.get(table, shardId).pipe(Option.flatten)
        const before = Option.getOrUndefined(Option.map(previous, keyOf))
        const after = Option.getOrUndefined(Option.map(next, keyOf))
        const newEpoch = Option.getOrElse(HashMap.get(state.epochs, shardId), () => 0)
        if (after === undefined) continue
        if (after !== before) {
          const end = leaseEnds.get(shardId.value)
          if (end !== undefined && now < end + margin) {
            refused.push(shardId.value)
            refusedEnds.push(end)
            nextAssignments = HashMap.set(nextAssignments, shardId, previous)
            nextEpochs = HashMap.remove(nextEpochs, shardId)
            continue
          }
        }
        if (after !== before || newEpoch > epochOf(currentEpochs, shardId.value)) {
          if (state.lease !== undefined) leaseEnds.set(shardId.value, now + state.lease.durationMillis)
          else leaseEnds.delete(shardId.value)
        }
      }
      yield* savePods(state.pods)
      yield* saveEpochs(nextEpochs)
      yield* saveAssignments(nextAssignments)
      return {
        refused: refused.sort((a, b) => a - b),
        retryInMillis: refused.length === 0 ? undefined : Math.max(0, nextEnd(refusedEnds) + margin - now)
      }
    })

  const storage: Omit<LeasedStorage, "fencedBy"> = {
    getAssignments: SubscriptionRef.get(assignments),
    saveAssignments,
    assignmentsStream: assignments.changes,
    getPods: Ref.get(pods),
    savePods,
    getEpochs: Ref.get(epochs),
    saveEpochs,
    saveAll,
    registerPod: (pod, incarnation) =>
      Effect.zipRight(
        Ref.update(pods, HashMap.set(pod.address, pod)),
        Effect.sync(() => void incarnations.set(keyOf(pod.address), { incarnation, renewals: 0 }))
      ),
    renewPodLease: (address, incarnation) =>
      Effect.flatMap(SubscriptionRef.get(assignments), (table) =>
        Effect.gen(function*() {
          const row = incarnations.get(keyOf(address))
          if (row === undefined || row.incarnation !== incarnation || !HashMap.has(yield* Ref.get(pods), address)) {
            return Option.none()
          }
          row.renewals++
          const current = yield* Ref.get(epochs)
          const held: Array<HeldShard> = []
          for (const [shardId, owner] of table) {
            if (Option.isSome(owner) && keyOf(owner.value) === keyOf(address) && shardIncarnations.get(shardId.value) === incarnation) {
              held.push({ shardId: shardId.value, epoch: Option.getOrElse(HashMap.get(current, shardId), () => 0) })
            }
          }
          return Option.some(held.sort((a, b) => a.shardId - b.shardId))
        })),
    renewShardLeases: (address, incarnation, held, leaseMillis) =>
      Effect.map(Effect.all([SubscriptionRef.get(assignments), Ref.get(epochs), Ref.get(pods)]), ([table, current, podMap]) => {
        const now = clock.unsafeCurrentTimeMillis()
        if (incarnations.get(keyOf(address))?.incarnation !== incarnation || !HashMap.has(podMap, address)) return []
        const renewed: Array<number> = []
        for (const { epoch, shardId } of held) {
          const owner = HashMap.findFirst(table, (_, shard) => shard.value === shardId).pipe(
            Option.flatMap(([, o]) => o)
          )
          const end = leaseEnds.get(shardId)
          if (
            Option.isSome(owner) && keyOf(owner.value) === keyOf(address) && epochOf(current, shardId) === epoch &&
            end !== undefined && now < end
          ) {
            leaseEnds.set(shardId, now + leaseMillis)
            renewed.push(shardId)
          }
        }
        return renewed.sort((a, b) => a - b)
      }),
    holdsShard: (address, incarnation, shardId, epoch) =>
      Effect.map(Effect.all([SubscriptionRef.get(assignments), Ref.get(epochs)]), ([table, current]) => {
        const owner = Option.flatten(HashMap.findFirst(table, (_, shard) => shard.value === shardId).pipe(Option.map(([, o]) => o)))
        const stored = HashMap.findFirst(current, (_, shard) => shard.value === shardId).pipe(Option.map(([, e]) => e))
        return Option.isSome(owner) && keyOf(owner.value) === keyOf(address) &&
          shardIncarnations.get(shardId) === incarnation && incarnations.get(keyOf(address))?.incarnation === incarnation &&
          Option.getOrUndefined(stored) === epoch
      }),
    getManagerLease: Effect.sync(() => Option.fromNullable(managerLease)),
    acquireManagerLease: (holder, observed) =>
      Effect.sync(() => {
        const unchanged = Option.match(observed, {
          onNone: () => managerLease === undefined,
          onSome: (seen) => managerLease !== undefined && managerLease.term === seen.term && managerLease.renewals === seen.renewals
        })
        if (!unchanged) return Option.none()
        managerLease = { holder, term: (managerLease?.term ?? 0) + 1, renewals: 0 }
        return Option.some(managerLease.term)
      }),
    renewManagerLease: (holder, term) =>
      Effect.sync(() => {
        if (managerLease === undefined || managerLease.holder !== holder || managerLease.term !== term) return false
        managerLease = { ...managerLease, renewals: managerLease.renewals + 1 }
        return true
      })
  }
  const fencedBy = (holder: string, term: number): Storage & Pick<LeasedStorage, "saveAll"> => {
    const fence = <A>(write: Effect.Effect<A, StorageException>) =>
      Effect.suspend(() =>
        managerLease?.holder === holder && managerLease.term === term
          ? write
          : Effect.fail(new StorageException({ reason: `manager ${holder} (term ${term}) no longer holds the manager lease`, fenced: true }))
      )
    return {
      ...storage,
      saveAssignments: (value) => fence(storage.saveAssignments(value)),
      savePods: (value) => fence(storage.savePods(value)),
      saveEpochs: (value) => fence(storage.saveEpochs(value)),
      saveAll: (state) => fence(storage.saveAll(state))
    }
  }
  return { ...storage, fencedBy }
})

/**
 * An in-memory storage: assignments in a `SubscriptionRef` (so `assignmentsStream` emits changes), pods and
 * epochs in `Ref`s. Shared by every manager built from the same layer instance, which is how tests restart
 * a manager "on the same database". Epochs only grow (a lower saved epoch is ignored).
 *
 * @since 0.1.0
 * @category layers
 */
export const memory: Layer.Layer<Storage> = Layer.effect(
  Storage,
  // Without `saveAll` (in memory it is the three writes anyway), so a wrapper that replaces one of them,
  // e.g. a test making `saveEpochs` slow, sees every write go through it.
  Effect.map(makeMemory, ({ saveAll: _, ...storage }): Storage => storage)
)

/**
 * A storage that keeps nothing: empty reads, discarded writes. Like any storage without durable epochs, a
 * shard manager refuses to start on it.
 *
 * @since 0.1.0
 * @category layers
 */
export const noop: Layer.Layer<Storage> = Layer.succeed(
  Storage,
  make({
    getAssignments: Effect.succeed(HashMap.empty()),
    saveAssignments: () => Effect.void,
    assignmentsStream: Stream.empty,
    getPods: Effect.succeed(HashMap.empty()),
    savePods: () => Effect.void
  })
)
