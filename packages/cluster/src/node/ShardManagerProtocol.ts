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
 * A pod joins (`ShardManagerClient.register`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Register = Rpc.make("Register", { payload: { pod: Pod }, error: RequestRejected })

/**
 * A pod leaves gracefully (`ShardManagerClient.unregister`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Unregister = Rpc.make("Unregister", { payload: { podAddress: PodAddress }, error: RequestRejected })

/**
 * A pod could not reach another (`ShardManagerClient.notifyUnhealthyPod`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const NotifyUnhealthyPod = Rpc.make("NotifyUnhealthyPod", {
  payload: { podAddress: PodAddress },
  error: RequestRejected
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
  error: Schema.Union(PodNoLongerRegisteredException, RequestRejected)
})

/**
 * The assignment table with epochs (`ShardManagerClient.getShardAssignments`, `getAssignments`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const GetShardAssignments = Rpc.make("GetShardAssignments", {
  success: Schema.Array(ShardAssignment),
  error: RequestRejected
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
  Effect.gen(function*() {
    const runFork = yield* FiberSet.makeRuntime<never>()
    const detached = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => Fiber.join(runFork(effect)))
    return ShardManagerRpcs.of({
      Register: ({ pod }) => detached(manager.register(pod)),
      Unregister: ({ podAddress }) => detached(manager.unregister(podAddress)),
      NotifyUnhealthyPod: ({ podAddress }) => detached(manager.notifyUnhealthyPod(podAddress)),
      Heartbeat: (request) => detached(manager.heartbeat(request)),
      GetShardAssignments: () => manager.getShardAssignments
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
  Effect.gen(function*() {
    const manager = yield* ShardManager
    const config = yield* TransportConfig
    const built = yield* ShardManagerRpcs.toHandlersContext(handlers(manager))
    yield* server.serve({
      name: "shard manager",
      group: ShardManagerRpcs,
      handlers: built,
      config,
      health: Effect.succeed(true)
    })
  })
