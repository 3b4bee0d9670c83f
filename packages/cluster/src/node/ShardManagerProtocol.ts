/**
 * The shard manager side of the network transport: the calls the manager answers (an `RpcGroup`), and
 * the server that answers them for a `ShardManager`.
 *
 * @since 0.1.0
 */
import type * as HttpServer from "@effect/platform/HttpServer"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Pod } from "../Pod.js"
import { PodAddress } from "../PodAddress.js"
import { HeartbeatRequest, LeaseGrant, ShardAssignment } from "../ShardAssignment.js"
import { PodNoLongerRegisteredException } from "../ShardingException.js"
import { ShardManager } from "../ShardManager.js"
import * as server from "./internal/server.js"
import { RequestRejected, TransportConfig } from "./Transport.js"

/**
 * This manager process is not the active manager (a standby, or one whose manager lease is no longer
 * certain): it did nothing. A pod's client tries the next manager of its list (docs/deployment.md).
 *
 * @since 0.1.0
 * @category errors
 */
export class ManagerNotActive extends Schema.TaggedError<ManagerNotActive>()(
  "@effect-cluster/cluster/node/ManagerNotActive",
  { detail: Schema.String }
) {}

const callError = Schema.Union(RequestRejected, ManagerNotActive)

/**
 * A pod joins (`ShardManagerClient.register`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Register = Rpc.make("Register", { payload: { pod: Pod }, error: callError })

/**
 * A pod leaves gracefully (`ShardManagerClient.unregister`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Unregister = Rpc.make("Unregister", { payload: { podAddress: PodAddress }, error: callError })

/**
 * A pod could not reach another (`ShardManagerClient.notifyUnhealthyPod`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const NotifyUnhealthyPod = Rpc.make("NotifyUnhealthyPod", {
  payload: { podAddress: PodAddress },
  error: callError
})

/**
 * Lease renewal: the pod's heartbeat, answered with a grant and the routing table
 * (`ShardManagerClient.heartbeat`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Heartbeat = Rpc.make("Heartbeat", {
  payload: HeartbeatRequest,
  success: LeaseGrant,
  error: Schema.Union(PodNoLongerRegisteredException, RequestRejected, ManagerNotActive)
})

/**
 * The assignment table with epochs (`ShardManagerClient.getShardAssignments`, `getAssignments`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const GetShardAssignments = Rpc.make("GetShardAssignments", {
  success: Schema.Array(ShardAssignment),
  error: callError
})

/**
 * The calls the shard manager answers.
 *
 * @since 0.1.0
 * @category rpcs
 */
export class ShardManagerRpcs
  extends RpcGroup.make(Register, Unregister, NotifyUnhealthyPod, Heartbeat, GetShardAssignments)
{}

/**
 * The handlers of `ShardManagerRpcs` for a manager. A call's work runs in a fiber of the server's scope: a
 * pod that disconnects mid-call abandons its wait, never a half-done registration or rebalance step.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handlers = (
  manager: ShardManager
): Effect.Effect<RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof ShardManagerRpcs>>, never, Scope.Scope> =>
  handlersWhenActive(Effect.succeed(Option.some(manager)))

const notActive = new ManagerNotActive({ detail: "this manager process is a standby" })

/**
 * The handlers for one of several manager processes: each call asks `current` for the manager first and
 * fails with `ManagerNotActive` (doing nothing) when there is none (a standby, or an active manager whose
 * lease is no longer certain).
 *
 * @since 0.1.0
 * @category handlers
 */
export const handlersWhenActive = (
  current: Effect.Effect<Option.Option<ShardManager>>
): Effect.Effect<RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof ShardManagerRpcs>>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runFork = yield* FiberSet.makeRuntime<never>()
    const detached = <A, E>(f: (manager: ShardManager) => Effect.Effect<A, E>): Effect.Effect<A, E | ManagerNotActive> =>
      Effect.flatMap(current, (manager): Effect.Effect<A, E | ManagerNotActive> =>
        Option.isNone(manager) ? Effect.fail(notActive) : Effect.suspend(() => Fiber.join(runFork(f(manager.value)))))
    return ShardManagerRpcs.of({
      Register: ({ pod }) => detached((manager) => manager.register(pod)),
      Unregister: ({ podAddress }) => detached((manager) => manager.unregister(podAddress)),
      NotifyUnhealthyPod: ({ podAddress }) => detached((manager) => manager.notifyUnhealthyPod(podAddress)),
      Heartbeat: (request) => detached((manager) => manager.heartbeat(request)),
      GetShardAssignments: () =>
        Effect.flatMap(current, (manager) =>
          Option.isNone(manager) ? Effect.fail(notActive) : manager.value.getShardAssignments)
    })
  })

/**
 * Serves the `ShardManager` on the HTTP server in context (websocket rpc at `/rpc`, `/health`) until the
 * scope closes.
 *
 * @since 0.1.0
 * @category servers
 */
export const serve: Effect.Effect<void, never, ShardManager | TransportConfig | HttpServer.HttpServer | Scope.Scope> =
  Effect.flatMap(ShardManager, (manager) => serveWhenActive(Effect.succeed(Option.some(manager))))

/**
 * Serves whichever manager `current` gives (see `handlersWhenActive`) on the HTTP server in context until
 * the scope closes. `/health` answers 200 while there is one, 503 ("standby") otherwise, so a readiness
 * probe or load balancer routes only to the active manager.
 *
 * @since 0.1.0
 * @category servers
 */
export const serveWhenActive = (
  current: Effect.Effect<Option.Option<ShardManager>>
): Effect.Effect<void, never, TransportConfig | HttpServer.HttpServer | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* TransportConfig
    const built = yield* ShardManagerRpcs.toHandlersContext(handlersWhenActive(current))
    yield* server.serve({
      name: "shard manager",
      group: ShardManagerRpcs,
      handlers: built,
      config,
      health: Effect.map(current, Option.isSome)
    })
  })
