/**
 * How a pod talks to the shard manager. Implementations: `local` (single pod, no manager), the in-process
 * transport (`InProcessTransport`), and a network one (next release).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type { HeartbeatRequest } from "./ShardAssignment.js"
import { LeaseGrant, ShardAssignment } from "./ShardAssignment.js"
import { PodAddress } from "./PodAddress.js"
import { ShardId } from "./ShardId.js"
import type { PodNoLongerRegisteredException, ShardManagerUnavailableException } from "./ShardingException.js"
import { ShardingConfig } from "./ShardingConfig.js"

/**
 * The manager as seen from a pod. `register`, `unregister`, `notifyUnhealthyPod` and `getAssignments` are
 * the 2024 members; `heartbeat` (renew the lease, learn assignments and epochs) and `getShardAssignments`
 * (the table with epochs, for routing) are additions.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardManagerClient {
  readonly register: (podAddress: PodAddress) => Effect.Effect<void, ShardManagerUnavailableException>
  readonly unregister: (podAddress: PodAddress) => Effect.Effect<void, ShardManagerUnavailableException>
  readonly notifyUnhealthyPod: (podAddress: PodAddress) => Effect.Effect<void, ShardManagerUnavailableException>
  readonly getAssignments: Effect.Effect<
    HashMap.HashMap<ShardId, Option.Option<PodAddress>>,
    ShardManagerUnavailableException
  >
  readonly heartbeat: (
    request: HeartbeatRequest
  ) => Effect.Effect<LeaseGrant, ShardManagerUnavailableException | PodNoLongerRegisteredException>
  readonly getShardAssignments: Effect.Effect<ReadonlyArray<ShardAssignment>, ShardManagerUnavailableException>
  /** The pods the manager knows (a broadcast reaches them all); without it, the pods of the routing table. */
  readonly getPods?: Effect.Effect<ReadonlyArray<PodAddress>, ShardManagerUnavailableException> | undefined
}

/**
 * @since 0.1.0
 * @category context
 */
export const ShardManagerClient: Context.Tag<ShardManagerClient, ShardManagerClient> = Context.GenericTag<
  ShardManagerClient
>("@effect-cluster/cluster/ShardManagerClient")

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (impl: ShardManagerClient): ShardManagerClient => impl

/**
 * Single-pod mode: every shard belongs to this pod (`selfHost:shardingPort`), with no manager. Each
 * `register` starts a new epoch, so a pod that unregistered and registers again takes its shards back.
 *
 * @since 0.1.0
 * @category layers
 */
export const local: Layer.Layer<ShardManagerClient, never, ShardingConfig> = Layer.effect(
  ShardManagerClient,
  Effect.gen(function*() {
    const config = yield* ShardingConfig
    const self = new PodAddress({ host: config.selfHost, port: config.shardingPort })
    const epoch = yield* Ref.make(1)
    const table = (current: number) =>
      Array.from(
        { length: config.numberOfShards },
        (_, i) => new ShardAssignment({ shardId: i + 1, pod: self, epoch: current })
      )
    return {
      register: () => Ref.update(epoch, (n) => n + 1),
      unregister: () => Effect.void,
      notifyUnhealthyPod: () => Effect.void,
      getAssignments: Effect.succeed(
        HashMap.fromIterable(
          Array.from({ length: config.numberOfShards }, (_, i) => [new ShardId({ value: i + 1 }), Option.some(self)])
        )
      ),
      heartbeat: () =>
        Effect.map(Ref.get(epoch), (current) =>
          new LeaseGrant({
            leaseDurationMillis: Duration.toMillis(config.leaseDuration),
            assignments: table(current)
          })),
      getShardAssignments: Effect.map(Ref.get(epoch), table),
      getPods: Effect.succeed([self])
    }
  })
)
