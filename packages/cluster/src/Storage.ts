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
import type * as Option from "effect/Option"
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
  "@effect-cluster/cluster/StorageException",
  { reason: Schema.String, cause: Schema.optional(Schema.Defect) }
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
}

/**
 * @since 0.1.0
 * @category context
 */
export const Storage: Context.Tag<Storage, Storage> = Context.GenericTag<Storage>("@effect-cluster/cluster/Storage")

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
 * An in-memory storage: assignments in a `SubscriptionRef` (so `assignmentsStream` emits changes), pods and
 * epochs in `Ref`s. Shared by every manager built from the same layer instance, which is how tests restart
 * a manager "on the same database".
 *
 * @since 0.1.0
 * @category layers
 */
export const memory: Layer.Layer<Storage> = Layer.effect(
  Storage,
  Effect.gen(function*() {
    const assignments = yield* SubscriptionRef.make(HashMap.empty<ShardId, Option.Option<PodAddress>>())
    const pods = yield* Ref.make(HashMap.empty<PodAddress, Pod>())
    const epochs = yield* Ref.make(HashMap.empty<ShardId, number>())
    return {
      getAssignments: SubscriptionRef.get(assignments),
      saveAssignments: (value) => SubscriptionRef.set(assignments, value),
      assignmentsStream: assignments.changes,
      getPods: Ref.get(pods),
      savePods: (value) => Ref.set(pods, value),
      getEpochs: Ref.get(epochs),
      saveEpochs: (value) => Ref.set(epochs, value)
    }
  })
)

/**
 * A storage that keeps nothing: empty reads, discarded writes.
 *
 * @since 0.1.0
 * @category layers
 */
export const noop: Layer.Layer<Storage> = Layer.succeed(Storage, {
  getAssignments: Effect.succeed(HashMap.empty()),
  saveAssignments: () => Effect.void,
  assignmentsStream: Stream.empty,
  getPods: Effect.succeed(HashMap.empty()),
  savePods: () => Effect.void,
  getEpochs: Effect.succeed(HashMap.empty()),
  saveEpochs: () => Effect.void
})
