import {
  InProcessTransport,
  ManagerConfig,
  PodAddress,
  Pods,
  PodsHealth,
  Serialization,
  Sharding,
  ShardingConfig,
  ShardId,
  ShardingException,
  ShardManager as ShardManagerModule,
  type ShardManager,
  ShardManagerClient,
  Storage
} from "@effect-cluster/cluster"
import { Context, Duration, Effect, Exit, Fiber, HashSet, Layer, Scope } from "effect"

/**
 * One pod alone (no network, the local shard manager client, memory storage, JSON serialization): it owns
 * every shard. `config` overrides the defaults.
 */
export const singlePod = (config: Partial<ShardingConfig.ShardingConfig> = {}) =>
  Sharding.live.pipe(
    Layer.provide(Pods.noop),
    Layer.provide(ShardManagerClient.local),
    Layer.provide(Serialization.json),
    Layer.provide(ShardingConfig.withDefaults(config)),
    Layer.provide(Layer.mergeAll(PodsHealth.noop, Storage.memory))
  )

/** Repeats `condition` (yielding between tries, no clock involved) until it holds. */
export const eventually = (condition: Effect.Effect<boolean>, maxSteps = 2000): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (let i = 0; i < maxSteps; i++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage("condition not reached")
  })

/** Lets forked fibers run without moving the clock. */
export const settle = Effect.repeatN(Effect.yieldNow(), 200)

export interface TestPod {
  readonly address: PodAddress.PodAddress
  readonly sharding: Sharding.Sharding
  /** Graceful: unregister (entities stop, finalizers run), then close. */
  readonly leave: Effect.Effect<void>
  /** Crash: the transport cuts the pod off first, so nothing it does afterwards reaches anyone. */
  readonly crash: Effect.Effect<void>
}

export interface TestCluster {
  readonly transport: InProcessTransport.InProcessTransport
  readonly startManager: Effect.Effect<void>
  readonly stopManager: Effect.Effect<void>
  readonly managerInstance: () => ShardManager.ShardManager | undefined
  readonly startPod: (
    port: number,
    setup?: Effect.Effect<void, never, Sharding.Sharding>,
    config?: Partial<ShardingConfig.ShardingConfig>
  ) => Effect.Effect<TestPod>
}

export const clusterTimings = {
  leaseDuration: Duration.seconds(30),
  leaseRenewalInterval: Duration.seconds(10),
  leaseMargin: Duration.seconds(5),
  entityTerminationTimeout: Duration.seconds(3)
}

export const makeTestCluster = (options: {
  readonly numberOfShards: number
  readonly serialize?: boolean
  readonly manager?: Partial<ManagerConfig.ManagerConfig>
  readonly pod?: Partial<ShardingConfig.ShardingConfig>
  /** The manager's storage (default: one `Storage.memory` shared by every manager started). */
  readonly storage?: Storage.Storage
  /** Where the pods renew their own leases (`Storage.PodLeases`; default: none, the manager only). */
  readonly podLeases?: Storage.LeasedStorage
  /**
   * As over the network: the manager's revocation call runs detached on the pod and gives up after this
   * (failing: the shards stay the pod's). Default: the call waits for the pod's answer.
   */
  readonly unassignTimeout?: Duration.Duration
}): Effect.Effect<TestCluster, never, Scope.Scope> =>
  Effect.gen(function*() {
    const outer = yield* Effect.scope
    const transport = InProcessTransport.make({ serialize: options.serialize ?? true })
    const transportContext = Context.make(InProcessTransport.InProcessTransport, transport)
    const storage = options.storage !== undefined
      ? Context.make(Storage.Storage, options.storage)
      : yield* Layer.build(Storage.memory)
    let managerScope: Scope.CloseableScope | undefined
    let manager: ShardManager.ShardManager | undefined
    const stopManager = Effect.suspend(() => {
      const scope = managerScope
      managerScope = undefined
      manager = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    })
    const startManager = Effect.gen(function*() {
      yield* stopManager
      const scope = yield* Scope.fork(outer, undefined as any)
      managerScope = scope
      const managerConfig = { numberOfShards: options.numberOfShards, ...options.manager }
      const unassignTimeout = options.unassignTimeout
      const managerLayer = unassignTimeout === undefined
        ? InProcessTransport.layerManager(managerConfig)
        : InProcessTransport.layerServeManager.pipe(
          Layer.provideMerge(ShardManagerModule.live),
          Layer.provide(PodsHealth.local),
          Layer.provideMerge(Layer.sync(Pods.Pods, () => {
            const pods = transport.podsFor("manager")
            return {
              ...pods,
              unassignShards: (pod, shards, epochs) =>
                Effect.flatMap(Effect.forkDaemon(pods.unassignShards(pod, shards, epochs)), Fiber.join).pipe(
                  Effect.timeoutFail({
                    duration: unassignTimeout,
                    onTimeout: () => new ShardingException.PodUnavailableException({ podAddress: pod })
                  })
                )
            }
          })),
          Layer.provide(ManagerConfig.withDefaults(managerConfig))
        )
      const context = yield* Layer.buildWithScope(
        managerLayer.pipe(Layer.provide(Layer.succeedContext(Context.merge(transportContext, storage)))),
        scope
      )
      manager = Context.get(context, ShardManagerModule.ShardManager)
    }).pipe(Effect.orDie) // the memory storage never fails
    const startPod = (
      port: number,
      setup?: Effect.Effect<void, never, Sharding.Sharding>,
      config?: Partial<ShardingConfig.ShardingConfig>
    ) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer, undefined as any)
        const context = yield* Layer.buildWithScope(
          InProcessTransport.layerPod({
            numberOfShards: options.numberOfShards,
            shardingPort: port,
            ...clusterTimings,
            ...options.pod,
            ...config
          }).pipe(Layer.provide(Layer.succeedContext(
            options.podLeases === undefined
              ? transportContext
              : Context.add(transportContext, Storage.PodLeases, options.podLeases)
          ))),
          scope
        )
        const sharding = Context.get(context, Sharding.Sharding)
        if (setup) yield* Effect.provide(setup, context)
        yield* sharding.register
        const address = PodAddress.make("localhost", port)
        return {
          address,
          sharding,
          leave: Effect.zipRight(sharding.unregister, Scope.close(scope, Exit.void)),
          crash: Effect.zipRight(transport.crash(address), Scope.close(scope, Exit.void))
        }
      })
    return {
      transport,
      startManager,
      stopManager,
      managerInstance: () => manager,
      startPod
    }
  })

/**
 * Two pods holding 15 of 30 shards each (pod 1 and pod 2), and `shard`, one of pod 2's, with its epoch there.
 * `misdirect` is a push that makes pod 1 take that shard at that epoch (not below the route it knows): pod 1's
 * next heartbeat's grant shows the shard on pod 2, and pod 1 stops it as lost.
 */
export const twoPodsAndAMisdirectedShard = (options: Parameters<typeof makeTestCluster>[0]) =>
  Effect.gen(function*() {
    const cluster = yield* makeTestCluster(options)
    yield* cluster.startManager
    const a = yield* cluster.startPod(1)
    const b = yield* cluster.startPod(2)
    const held = (pod: TestPod) => Effect.map(pod.sharding.getAssignedShardIds, (s) => Array.from(s, (id) => id.value))
    yield* eventually(Effect.map(Effect.all([held(a), held(b)]), ([x, y]) => x.length === 15 && y.length === 15))
    const shard = (yield* held(b))[0]!
    const epoch = (yield* b.sharding.servedShardEpochs).get(shard)!
    const misdirect = a.sharding.assign(HashSet.make(ShardId.make(shard)), new Map([[shard, epoch]]))
    return { cluster, a, b, held, shard, misdirect }
  })
