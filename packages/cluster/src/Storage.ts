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
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Pod } from "./Pod.js"
import type { PodAddress } from "./PodAddress.js"
import type { ShardId } from "./ShardId.js"

/**
 * The manager's persistent state. The 2024 members (`getAssignments`, `saveAssignments`,
 * `assignmentsStream`, `getPods`, `savePods`) are kept; `getEpochs`/`saveEpochs` are additions: the manager
 * saves a shard's new epoch before announcing it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Storage {
  readonly getAssignments: Effect.Effect<HashMap.HashMap<ShardId, Option.Option<PodAddress>>>
  readonly saveAssignments: (assignments: HashMap.HashMap<ShardId, Option.Option<PodAddress>>) => Effect.Effect<void>
  readonly assignmentsStream: Stream.Stream<HashMap.HashMap<ShardId, Option.Option<PodAddress>>>
  readonly getPods: Effect.Effect<HashMap.HashMap<PodAddress, Pod>>
  readonly savePods: (pods: HashMap.HashMap<PodAddress, Pod>) => Effect.Effect<void>
  readonly getEpochs: Effect.Effect<HashMap.HashMap<ShardId, number>>
  readonly saveEpochs: (epochs: HashMap.HashMap<ShardId, number>) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category context
 */
export const Storage: Context.Tag<Storage, Storage> = Context.GenericTag<Storage>("@effect-cluster/cluster/Storage")

/**
 * Builds a storage. `getEpochs`/`saveEpochs` may be omitted (2024 implementations): epochs are then kept in
 * this process only, so they survive a manager restart only within the same process.
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
  let epochs = HashMap.empty<ShardId, number>()
  return {
    ...impl,
    getEpochs: Effect.sync(() => epochs),
    saveEpochs: (next) => Effect.sync(() => void (epochs = next))
  }
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
