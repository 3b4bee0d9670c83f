import { type ManagerConfig, Sharding, type ShardingConfig, ShardManager, Storage } from "@effect-cluster/cluster"
import { NodeCluster, type Transport } from "@effect-cluster/cluster/node"
import * as HttpServer from "@effect/platform/HttpServer"
import { Context, Effect, ExecutionStrategy, Exit, Layer, Logger, Scope } from "effect"

/** Pods and a manager in this process, talking over real loopback sockets through the network layers. */

/** Polls `condition` on the live clock until it holds, failing after `timeoutMillis`. */
export const eventuallyLive = (condition: Effect.Effect<boolean>, timeoutMillis = 10_000): Effect.Effect<void> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    while (!(yield* condition)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage("condition not reached in time")
      yield* Effect.sleep("10 millis")
    }
  })

export const portOf = (context: Context.Context<HttpServer.HttpServer>): number => {
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "TcpAddress" ? address.port : 0
}

export interface NetworkManager {
  readonly manager: ShardManager.ShardManager
  readonly port: number
  readonly uri: string
}

export const startManager = (options: {
  readonly manager?: Partial<ManagerConfig.ManagerConfig>
  readonly transport?: Partial<Transport.TransportConfig>
}): Effect.Effect<NetworkManager, never, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      NodeCluster.layerManager({
        manager: { apiPort: 0, ...options.manager },
        transport: options.transport
      }).pipe(Layer.provide(Storage.memory))
    )
    const port = portOf(context)
    return { manager: Context.get(context, ShardManager.ShardManager), port, uri: `http://127.0.0.1:${port}` }
  })

export interface NetworkPod {
  readonly sharding: Sharding.Sharding
  readonly port: number
  readonly close: Effect.Effect<void>
}

/** A pod, registered, with `setup` run first (entity registrations). */
export const startPod = (options: {
  readonly managerUri: string
  readonly sharding?: Partial<ShardingConfig.ShardingConfig>
  readonly transport?: Partial<Transport.TransportConfig>
  readonly setup?: Effect.Effect<void, never, Sharding.Sharding>
}): Effect.Effect<NetworkPod, never, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
    const context = yield* Layer.buildWithScope(
      NodeCluster.layerPod({
        sharding: { shardingPort: 0, shardManagerUri: options.managerUri, ...options.sharding },
        transport: options.transport
      }),
      scope
    )
    const sharding = Context.get(context, Sharding.Sharding)
    if (options.setup) yield* Effect.provideService(options.setup, Sharding.Sharding, sharding)
    yield* Scope.extend(sharding.registerScoped, scope)
    return { sharding, port: portOf(context), close: Scope.close(scope, Exit.void) }
  })

/** A logger keeping every line (message and annotations) as text. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const parts = Array.isArray(message) ? message : [message]
    const annotated: Record<string, unknown> = {}
    for (const [key, value] of annotations) annotated[key] = value
    lines.push(`${logLevel.label} ${parts.map(String).join(" ")} ${JSON.stringify(annotated)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

