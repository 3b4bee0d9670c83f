/// <reference types="node" />
/**
 * One-call layers for real processes: a pod and a shard manager serving each other over the network
 * transport (websocket rpc on `@effect/platform-node`'s HTTP server, `/rpc` and `/health`).
 *
 * @since 0.1.0
 */
import type * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Https from "node:https"
import * as ManagerConfig from "../ManagerConfig.js"
import * as PodsHealth from "../PodsHealth.js"
import * as Serialization from "../Serialization.js"
import * as Sharding from "../Sharding.js"
import * as ShardingConfig from "../ShardingConfig.js"
import * as ShardManager from "../ShardManager.js"
import type { Storage, StorageException } from "../Storage.js"
import * as server from "./internal/server.js"
import * as PodsRpc from "./PodsRpc.js"
import * as ShardingProtocol from "./ShardingProtocol.js"
import * as ShardManagerClientRpc from "./ShardManagerClientRpc.js"
import * as ShardManagerProtocol from "./ShardManagerProtocol.js"
import * as Transport from "./Transport.js"

/**
 * What a pod layer is built from. The pod listens on `transport.host` (127.0.0.1 unless set) at
 * `sharding.shardingPort` (0: any free port) and advertises `sharding.selfHost` (by default the listening
 * host, or `localhost` when that is a wildcard) with the port it bound. `https` makes the server TLS.
 *
 * @since 0.1.0
 * @category models
 */
export interface PodOptions {
  readonly sharding?: Partial<ShardingConfig.ShardingConfig> | undefined
  readonly transport?: Partial<Transport.TransportConfig> | undefined
  readonly batch?: Partial<PodsRpc.BatchOptions> | undefined
  readonly https?: Https.ServerOptions | undefined
}

/**
 * What a manager layer is built from. The manager listens on `transport.host` (127.0.0.1 unless set) at
 * `manager.apiPort` (0: any free port).
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagerOptions {
  readonly manager?: Partial<ManagerConfig.ManagerConfig> | undefined
  readonly transport?: Partial<Transport.TransportConfig> | undefined
  readonly https?: Https.ServerOptions | undefined
}

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::"

/**
 * A whole pod: `Sharding.live` with JSON serialization, `PodsRpc` and `ShardManagerClientRpc`, served on
 * the network. Registering it (`Sharding.registerScoped`) is up to the program. The server stops after
 * the program's scope (and its graceful unregistration) is done. With `Storage.PodLeases` provided to it
 * (e.g. `StorageSql.layerPodLeases`, on the manager's database and prefix), the pod also renews its leases
 * in the database, and keeps serving its shards while the manager is down.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPod = (options: PodOptions = {}): Layer.Layer<Sharding.Sharding | HttpServer.HttpServer> => {
  const transport: Transport.TransportConfig = { ...Transport.defaultValues, ...options.transport }
  const requested = { ...ShardingConfig.defaultValues, ...options.sharding }
  const http = server.layerHttpServer({ host: transport.host, port: requested.shardingPort, https: options.https })
  const pod = Layer.scopedContext(Effect.gen(function*() {
    const port = yield* server.boundPort
    const selfHost = options.sharding?.selfHost ?? (isWildcard(transport.host) ? "localhost" : transport.host)
    const config = { ...requested, selfHost, shardingPort: port }
    const context = yield* Layer.build(
      Sharding.live.pipe(
        Layer.provide(PodsRpc.layer(options.batch)),
        Layer.provide(ShardManagerClientRpc.layer),
        Layer.provide(Serialization.json),
        Layer.provideMerge(Layer.succeed(ShardingConfig.ShardingConfig, config)),
        Layer.provideMerge(Layer.succeed(Transport.TransportConfig, transport))
      )
    )
    yield* ShardingProtocol.serve.pipe(Effect.provide(context))
    return Context.pick(Sharding.Sharding)(context)
  }))
  return Layer.provideMerge(pod, http)
}

/**
 * A shard manager: `ShardManager.live` with `PodsRpc` and `PodsHealth.local` (a ping over the network),
 * served on the network. Needs a `Storage`; fails to start with `StorageException` when the storage
 * cannot be read.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerManager = (
  options: ManagerOptions = {}
): Layer.Layer<ShardManager.ShardManager | HttpServer.HttpServer, StorageException, Storage> => {
  const transport: Transport.TransportConfig = { ...Transport.defaultValues, ...options.transport }
  const config = { ...ManagerConfig.defaultValues, ...options.manager }
  const http = server.layerHttpServer({ host: transport.host, port: config.apiPort, https: options.https })
  const manager = Layer.scopedDiscard(ShardManagerProtocol.serve).pipe(
    Layer.provideMerge(ShardManager.live),
    Layer.provide(PodsHealth.local),
    Layer.provide(PodsRpc.layer()),
    Layer.provide(Layer.succeed(ManagerConfig.ManagerConfig, config)),
    Layer.provide(Layer.succeed(Transport.TransportConfig, transport))
  )
  return Layer.provideMerge(manager, http)
}

/**
 * `layerPod` configured from the environment (`ShardingConfig.config` and `Transport.config`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPodFromConfig: Layer.Layer<Sharding.Sharding | HttpServer.HttpServer, ConfigError.ConfigError> =
  Layer.unwrapEffect(
    Effect.map(
      Config.all({ sharding: ShardingConfig.config, transport: Transport.config }),
      (options) => layerPod(options)
    )
  )

/**
 * `layerManager` configured from the environment (`ManagerConfig.config` and `Transport.config`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerManagerFromConfig: Layer.Layer<
  ShardManager.ShardManager | HttpServer.HttpServer,
  ConfigError.ConfigError | StorageException,
  Storage
> = Layer.unwrapEffect(
  Effect.map(
    Config.all({ manager: ManagerConfig.config, transport: Transport.config }),
    (options) => layerManager(options)
  )
)
