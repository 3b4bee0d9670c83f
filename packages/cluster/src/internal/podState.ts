import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type { PodAddress } from "../PodAddress.js"
import type { Pods } from "../Pods.js"
import type { Serialization } from "../Serialization.js"
import type { ShardingConfig } from "../ShardingConfig.js"
import type { ShardManagerClient } from "../ShardManagerClient.js"
import type { LeasedStorage } from "../Storage.js"
import type { SendThen } from "./direct.js"
import type { EntityManager } from "./entityManager.js"

/** Where the routing table sends a shard's messages: its owner (if any) at an epoch. */
export interface Route {
  readonly pod: PodAddress | undefined
  readonly podKey: string
  readonly epoch: number
}

/** The key of a pod in the routing table. */
export const podKeyOf = (address: PodAddress): string => `${address.host}:${address.port}`

/** The services and helpers every step of a pod uses. */
export interface PodServices {
  readonly config: ShardingConfig
  readonly self: PodAddress
  readonly pods: Pods
  readonly client: ShardManagerClient
  readonly serialization: Serialization
  /**
   * The transport's immediate send when it has one (in-process pods; the network transport continues it
   * as the reply arrives), else its suspended one followed by the continuation.
   */
  readonly sendNow: SendThen
  /** Monotonic milliseconds from the Clock service (leases, idleness, stop deadlines). */
  readonly monotonicMillis: () => number
  /** Runs an effect in a fiber the pod owns (interrupted when the pod's scope closes). */
  readonly fork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  /** Where the pod renews its own leases (`Storage.PodLeases`), with this process's incarnation. */
  readonly leases: { readonly storage: LeasedStorage; readonly incarnation: string } | undefined
}

/**
 * The pod's view of shard ownership: the routing table, the epochs it holds and has released, its lease.
 * Plain mutable structures, touched only synchronously inside effects, so fibers never see a half-applied
 * update. Shard numbers index the arrays (0 unused); epoch 0 means "none".
 */
export class PodState {
  readonly numberOfShards: number
  readonly selfKey: string
  readonly terminationMillis: number
  readonly routing: Array<Route | undefined>
  readonly heldEpoch: Float64Array
  readonly releasedEpoch: Float64Array
  /** Monotonic ms: the end of the lease the manager granted (all shards). */
  leaseEnd = Number.NEGATIVE_INFINITY
  /**
   * Per shard, the end (monotonic ms) of its lease as last renewed in the database, and the epoch renewed:
   * it covers the shard only while the pod still holds it at that epoch. A shard's lease is the later of the
   * two; no work on it after that minus `terminationMillis`.
   */
  readonly dbLeaseEnd: Float64Array
  readonly dbLeaseEpoch: Float64Array
  /** The lease of the last grant: the pod's own `leaseDuration`, or a shorter one granted by the manager. */
  grantedLeaseMillis: number
  registered = false
  shuttingDown = false
  readonly entityManagers = new Map<string, EntityManager>()
  /** Work of its own per shard to stop with the shards' entities (`Sharding.registerShardStop`). */
  readonly shardStoppers = new Set<(shards: ReadonlyArray<number>, kind: "handoff" | "lost") => Effect.Effect<void>>()
  /** Called (synchronously) after each change of a held epoch or of `shuttingDown`. */
  private readonly heldListeners = new Set<() => void>()

  constructor(readonly services: PodServices, terminationTimeout: Duration.Duration) {
    this.numberOfShards = services.config.numberOfShards
    this.selfKey = podKeyOf(services.self)
    this.terminationMillis = Duration.toMillis(terminationTimeout)
    this.grantedLeaseMillis = Duration.toMillis(services.config.leaseDuration)
    this.routing = new Array(this.numberOfShards + 1)
    this.heldEpoch = new Float64Array(this.numberOfShards + 1)
    this.releasedEpoch = new Float64Array(this.numberOfShards + 1)
    this.dbLeaseEnd = new Float64Array(this.numberOfShards + 1).fill(Number.NEGATIVE_INFINITY)
    this.dbLeaseEpoch = new Float64Array(this.numberOfShards + 1)
  }

  /** When the lease on a held shard ends (monotonic ms): the manager's, or a later one from the database. */
  shardLeaseEnd(shard: number): number {
    const held = this.heldEpoch[shard]!
    return held !== 0 && this.dbLeaseEpoch[shard] === held
      ? Math.max(this.leaseEnd, this.dbLeaseEnd[shard]!)
      : this.leaseEnd
  }

  /** Holds `shard` at `epoch` (0: not held) and tells the listeners when that changed. */
  setHeld(shard: number, epoch: number): void {
    if (this.heldEpoch[shard] === epoch) return
    this.heldEpoch[shard] = epoch
    this.heldChanged()
  }

  /** Tells the listeners that the served shards may have changed. */
  heldChanged(): void {
    for (const listener of this.heldListeners) listener()
  }

  /** Calls `listener` after each change of the held shards until the returned function is called. */
  onHeldChange(listener: () => void): () => void {
    this.heldListeners.add(listener)
    return () => void this.heldListeners.delete(listener)
  }

  leaseValid(): boolean {
    return this.services.monotonicMillis() < this.leaseEnd - this.terminationMillis
  }

  /** A pod serves a shard only while it holds it at (or after) the sender's epoch, under a valid lease. */
  canServe(shard: number, epoch: number): boolean {
    const held = this.heldEpoch[shard]!
    return held !== 0 && epoch <= held && !this.shuttingDown &&
      this.services.monotonicMillis() < this.shardLeaseEnd(shard) - this.terminationMillis
  }

  inRange(shard: number): boolean {
    return shard >= 1 && shard <= this.numberOfShards
  }

  heldShards(): Array<number> {
    const held: Array<number> = []
    for (let shard = 1; shard <= this.numberOfShards; shard++) if (this.heldEpoch[shard]! !== 0) held.push(shard)
    return held
  }
}
