/**
 * `ShardManagerClient` over the network: a pod's calls to the shard manager through
 * `ShardManagerProtocol`, on one pooled connection per manager of `ShardingConfig.shardManagerUri` (one
 * URI, or several separated by commas: one active manager and its standbys). A call goes to the manager
 * that answered last; when that one answers `ManagerNotActive` or cannot be reached, the call moves on to
 * the next of the list, within the same bound. Every call is bounded: lease renewal by half the renewal
 * interval (so a silent manager never delays the next renewal or the lease watchdog), the others by
 * `callTimeout`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import { Pod } from "../Pod.js"
import { ShardId } from "../ShardId.js"
import { ShardingConfig } from "../ShardingConfig.js"
import { PodNoLongerRegisteredException, ShardManagerUnavailableException } from "../ShardingException.js"
import { ShardManagerClient } from "../ShardManagerClient.js"
import { makePeerPool, PeerFailure } from "./internal/client.js"
import { ManagerNotActive, ShardManagerRpcs } from "./ShardManagerProtocol.js"
import type { RequestRejected } from "./Transport.js"
import { TransportConfig } from "./Transport.js"

/**
 * The manager's host and port in a URI (`http://host:port/...`; the path is ignored, the rpc endpoint is
 * always `/rpc`).
 *
 * @since 0.1.0
 * @category conversions
 */
export const managerAddressOf = (uri: string): { readonly host: string; readonly port: number } => {
  const url = new URL(uri)
  const secure = url.protocol === "https:" || url.protocol === "wss:"
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname
  return { host, port: url.port === "" ? (secure ? 443 : 80) : Number(url.port) }
}

/**
 * The managers' addresses in `shardManagerUri`: one URI, or several separated by commas (see
 * `managerAddressOf`).
 *
 * @since 0.1.0
 * @category conversions
 */
export const managerAddressesOf = (uris: string): ReadonlyArray<{ readonly host: string; readonly port: number }> =>
  uris.split(",").map((uri) => uri.trim()).filter((uri) => uri !== "").map(managerAddressOf)

/**
 * Builds the network `ShardManagerClient` (scoped: the connection closes with the scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<ShardManagerClient, never, ShardingConfig | TransportConfig | Scope.Scope> = Effect
  .gen(function*() {
    const sharding = yield* ShardingConfig
    const config = yield* TransportConfig
    const pool = yield* makePeerPool(ShardManagerRpcs, config)
    const managers = managerAddressesOf(sharding.shardManagerUri)
    // The manager that answered last: calls start there.
    let current = 0
    const renewalTimeout = Duration.min(config.callTimeout, Duration.divide(sharding.leaseRenewalInterval, 2).pipe(
      Option.getOrElse(() => config.callTimeout)
    ))

    const unavailable = (error: PeerFailure | RequestRejected | ManagerNotActive) =>
      error instanceof PeerFailure
        ? Effect.fail(new ShardManagerUnavailableException({ reason: error.reason }))
        : error instanceof ManagerNotActive
        ? Effect.fail(new ShardManagerUnavailableException({ reason: "no active manager answered (standbys only)" }))
        : Effect.zipRight(
          Effect.logWarning("the shard manager rejected a request").pipe(
            Effect.annotateLogs({ reason: error.reason, detail: error.detail })
          ),
          Effect.fail(new ShardManagerUnavailableException({ reason: `rejected: ${error.reason}` }))
        )

    // Each manager of the list at most once, from the current one (read when the call runs: some calls are
    // built once and run many times), all within `timeout`: an unreachable manager or a standby makes the
    // call move on; the last failure is the call's.
    const call = <A, E>(
      timeout: Duration.Duration,
      f: Parameters<typeof pool.call<A, E>>[3]
    ): Effect.Effect<A, Exclude<E, RpcClientError> | PeerFailure> => Effect.suspend(() => {
      const start = current
      const attempt = (tried: number): Effect.Effect<A, Exclude<E, RpcClientError> | PeerFailure> => {
        const index = (start + tried) % managers.length
        const manager = managers[index]!
        const next = () => {
          if (current === index) current = (index + 1) % managers.length
        }
        return pool.call(manager.host, manager.port, timeout, f).pipe(
          Effect.tap(() => Effect.sync(() => void (current = index))),
          Effect.catchAll((error) =>
            error instanceof PeerFailure || error instanceof ManagerNotActive
              ? Effect.zipRight(Effect.sync(next), tried + 1 < managers.length ? attempt(tried + 1) : Effect.fail(error))
              : Effect.fail(error)
          ),
          Effect.onInterrupt(() => Effect.sync(next))
        )
      }
      return managers.length === 0
        ? Effect.fail(new PeerFailure(true, "no shard manager address (shardManagerUri is empty)"))
        : attempt(0).pipe(
          Effect.timeoutFail({ duration: timeout, onTimeout: () => new PeerFailure(false, "timed out") })
        )
    })

    const getShardAssignments = call(config.callTimeout, (client) => client.GetShardAssignments()).pipe(
      Effect.catchAll(unavailable)
    )

    return ShardManagerClient.of({
      register: (address) =>
        call(config.callTimeout, (client) => client.Register({ pod: new Pod({ address, version: sharding.serverVersion }) }))
          .pipe(Effect.catchAll(unavailable)),
      unregister: (podAddress) =>
        call(config.callTimeout, (client) => client.Unregister({ podAddress })).pipe(Effect.catchAll(unavailable)),
      notifyUnhealthyPod: (podAddress) =>
        call(config.callTimeout, (client) => client.NotifyUnhealthyPod({ podAddress })).pipe(
          Effect.catchAll(unavailable)
        ),
      getAssignments: Effect.map(getShardAssignments, (assignments) =>
        HashMap.fromIterable(
          assignments.map((assignment) =>
            [new ShardId({ value: assignment.shardId }), Option.fromNullable(assignment.pod)] as const
          )
        )),
      heartbeat: (request) =>
        call(renewalTimeout, (client) => client.Heartbeat(request)).pipe(
          Effect.catchAll((error): Effect.Effect<never, PodNoLongerRegisteredException | ShardManagerUnavailableException> =>
            error instanceof PodNoLongerRegisteredException ? Effect.fail(error) : unavailable(error)
          )
        ),
      getShardAssignments
    })
  })

/**
 * The network `ShardManagerClient`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<ShardManagerClient, never, ShardingConfig | TransportConfig> = Layer.scoped(
  ShardManagerClient,
  make
)
