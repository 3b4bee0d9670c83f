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
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as Https from "node:https"
import * as ManagerConfig from "../ManagerConfig.js"
import * as ManagerLease from "../ManagerLease.js"
import type { PodAddress } from "../PodAddress.js"
import * as Pods from "../Pods.js"
import * as PodsHealth from "../PodsHealth.js"
import * as Serialization from "../Serialization.js"
import * as Sharding from "../Sharding.js"
import * as ShardingConfig from "../ShardingConfig.js"
import { PodUnavailableException } from "../ShardingException.js"
import * as ShardManager from "../ShardManager.js"
import { type LeasedStorage, Storage, StorageException } from "../Storage.js"
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

/**
 * A manager that is one of several processes on one database (`layerManagerStandby`): `holder` names this
 * process in the manager lease row (unique per process start).
 *
 * @since 0.1.0
 * @category models
 */
export interface StandbyOptions extends ManagerOptions {
  readonly holder: string
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

// A manager whose lease is no longer certain (it may have been paused past it) asks no pod to take or give
// up shards: `unassignShards` failing means "still owned", and a refused push is learnt from the next
// heartbeat, which it does not answer either.
const fencedPods = (pods: Pods.Pods, active: Effect.Effect<boolean>): Pods.Pods => {
  const gate = <A>(pod: PodAddress, call: Effect.Effect<A, PodUnavailableException>) =>
    Effect.flatMap(active, (certain) => certain ? call : Effect.fail(new PodUnavailableException({ podAddress: pod })))
  return {
    ...pods,
    assignShards: (pod, shards, epochs) => gate(pod, pods.assignShards(pod, shards, epochs)),
    unassignShards: (pod, shards, epochs) => gate(pod, pods.unassignShards(pod, shards, epochs))
  }
}

const isLeased = (storage: Storage): storage is LeasedStorage =>
  "acquireManagerLease" in storage && "fencedBy" in storage

/**
 * One of several shard manager processes on one `LeasedStorage` (`StorageSql`, or `Storage.makeMemory` in
 * one process): its server binds at once and answers every call with `ManagerNotActive` (and `/health`
 * with 503) until this process holds the manager lease (`ManagerLease.acquire`); the layer is built then,
 * with a `ShardManager` on the lease's fenced storage, resuming the stored assignments. It answers only
 * while its lease is certain (`HeldManagerLease.active`), and only then asks pods to take or give up
 * shards; once the lease is lost its loops stop and it answers `ManagerNotActive` again, for good:
 * `ManagerLease.Tenure`'s `lost` tells the program to stop (the `effect-cluster manager` command exits). Pods list every manager in `shardManagerUri`
 * (docs/deployment.md). Fails with `StorageException` when the storage has no manager lease.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerManagerStandby = (
  options: StandbyOptions
): Layer.Layer<
  ShardManager.ShardManager | ManagerLease.HeldManagerLease | HttpServer.HttpServer,
  StorageException,
  Storage
> => {
  const transport: Transport.TransportConfig = { ...Transport.defaultValues, ...options.transport }
  const config = { ...ManagerConfig.defaultValues, ...options.manager }
  const http = server.layerHttpServer({ host: transport.host, port: config.apiPort, https: options.https })
  const services = PodsHealth.local.pipe(
    Layer.provideMerge(PodsRpc.layer()),
    Layer.merge(Layer.succeed(ManagerConfig.ManagerConfig, config)),
    Layer.provide(Layer.succeed(Transport.TransportConfig, transport))
  )
  const manager = Layer.scopedContext(Effect.gen(function*() {
    const storage = yield* Storage
    if (!isLeased(storage)) {
      return yield* new StorageException({ reason: "standby managers need a storage with a manager lease (StorageSql)" })
    }
    let active: { readonly manager: ShardManager.ShardManager; readonly held: ManagerLease.HeldManagerLease } | undefined
    const current = Effect.suspend(() =>
      active === undefined
        ? Effect.succeed(Option.none<ShardManager.ShardManager>())
        : Effect.map(active.held.active, (certain) => certain ? Option.some(active!.manager) : Option.none())
    )
    yield* ShardManagerProtocol.serveWhenActive(current).pipe(Effect.provideService(Transport.TransportConfig, transport))
    yield* Effect.logInfo(`manager ${options.holder}: standby, waiting for the manager lease`)
    const held = yield* ManagerLease.acquire(storage, {
      holder: options.holder,
      leaseDuration: config.leaseDuration,
      leaseMargin: config.leaseMargin
    })
    // The manager's own scope: closed (its loops stopped) once the lease is lost.
    const managerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const base = yield* Layer.buildWithScope(services, managerScope)
    const context = yield* Layer.buildWithScope(ShardManager.live, managerScope).pipe(
      Effect.provide(
        base.pipe(
          Context.add(Pods.Pods, fencedPods(Context.get(base, Pods.Pods), held.active)),
          Context.add(Storage, held.storage)
        )
      )
    )
    active = { manager: Context.get(context, ShardManager.ShardManager), held }
    yield* Effect.logInfo(`manager ${options.holder}: active (term ${held.term})`)
    yield* Effect.forkScoped(Effect.zipRight(held.lost, Scope.close(managerScope, Exit.void)))
    return Context.add(context, ManagerLease.Tenure, held)
  }))
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
