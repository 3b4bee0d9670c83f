/**
 * An in-process transport: several pods and a shard manager in one process, talking through `Pods` and
 * `ShardManagerClient` implementations that call each other directly. Envelopes and replies can be forced
 * through JSON (`serialize: true`, the default), exactly as a network transport would encode them. Faults
 * can be injected: crash a pod, partition a pod from the manager, take the manager away.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as direct from "./internal/direct.js"
import * as sync from "./internal/exit.js"
import * as wire from "./internal/wire.js"
import * as ManagerConfig from "./ManagerConfig.js"
import type * as MessageState from "./MessageState.js"
import { Pod } from "./Pod.js"
import type { PodAddress } from "./PodAddress.js"
import { Pods } from "./Pods.js"
import * as PodsHealth from "./PodsHealth.js"
import * as Serialization from "./Serialization.js"
import type { SerializedEnvelope } from "./SerializedEnvelope.js"
import type { SerializedMessage } from "./SerializedMessage.js"
import * as Sharding from "./Sharding.js"
import * as ShardingConfig from "./ShardingConfig.js"
import * as ShardingException from "./ShardingException.js"
import * as ShardManager from "./ShardManager.js"
import { ShardManagerClient } from "./ShardManagerClient.js"
import type { Storage, StorageException } from "./Storage.js"
import * as StorageModule from "./Storage.js"

/**
 * The in-process "network".
 *
 * @since 0.1.0
 * @category models
 */
export interface InProcessTransport {
  /** Whether envelopes, replies and errors go through JSON between pods. */
  readonly serialize: boolean
  /** The pod stops answering and cannot call anyone, as if its process died (no finalizer reaches out). */
  readonly crash: (address: PodAddress) => Effect.Effect<void>
  /** Cuts the pod off from the manager (both directions); pods still reach each other. */
  readonly partitionFromManager: (address: PodAddress) => Effect.Effect<void>
  /** Undoes `partitionFromManager`. */
  readonly heal: (address: PodAddress) => Effect.Effect<void>
  /** Makes a pod reachable at its address while the scope is open. */
  readonly servePod: (sharding: Sharding.Sharding) => Effect.Effect<void, never, Scope.Scope>
  /** Makes the manager reachable while the scope is open. */
  readonly serveManager: (manager: ShardManager.ShardManager) => Effect.Effect<void, never, Scope.Scope>
  /** The `Pods` client of a caller (a pod's address, or `"manager"`). */
  readonly podsFor: (caller: PodAddress | "manager") => Pods
  /** The `ShardManagerClient` of a pod. */
  readonly managerClientFor: (self: PodAddress, version: string) => ShardManagerClient
}

/**
 * @since 0.1.0
 * @category context
 */
export const InProcessTransport: Context.Tag<InProcessTransport, InProcessTransport> = Context.GenericTag<
  InProcessTransport
>("@effect-cluster/cluster/InProcessTransport")

const keyOf = (address: PodAddress): string => `${address.host}:${address.port}`

const ErrorJson = Schema.parseJson(ShardingException.schema)
const encodeErrorSync = Schema.encodeSync(ErrorJson)
const decodeErrorSync = Schema.decodeUnknownSync(ErrorJson)

/**
 * Builds a transport.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: { readonly serialize?: boolean | undefined }): InProcessTransport => {
  const serialize = options?.serialize ?? true
  const servers = new Map<string, Sharding.Sharding>()
  const crashed = new Set<string>()
  const partitioned = new Set<string>()
  let manager: ShardManager.ShardManager | undefined

  const roundTripError = (error: ShardingException.ShardingException): ShardingException.ShardingException =>
    serialize ? decodeErrorSync(encodeErrorSync(error)) : error

  const podsFor = (caller: PodAddress | "manager"): Pods => {
    const callerKey = caller === "manager" ? "manager" : keyOf(caller)
    const reach = (pod: PodAddress): Effect.Effect<Sharding.Sharding, ShardingException.PodUnavailableException> =>
      Effect.suspend(() => {
        const key = keyOf(pod)
        const server = servers.get(key)
        const blocked = crashed.has(key) || crashed.has(callerKey) ||
          (callerKey === "manager" && (partitioned.has(key) || manager === undefined))
        return server === undefined || blocked
          ? Effect.fail(new ShardingException.PodUnavailableException({ podAddress: pod }))
          : Effect.succeed(server)
      })
    // Delivers now (the caller is a running effect): the receiving pod handles the envelope in the
    // caller's fiber, as a network server would in its own.
    const sendNow = (
      pod: PodAddress,
      envelope: SerializedEnvelope
    ): Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException.ShardingException> => {
      const key = keyOf(pod)
      const server = servers.get(key)
      if (server === undefined || crashed.has(key) || crashed.has(callerKey)) {
        return Exit.fail(new ShardingException.PodUnavailableException({ podAddress: pod }))
      }
      // The envelope and the reply cross as JSON text (the same text as their schemas' encoding).
      const received = serialize ? wire.decodeEnvelope(wire.encodeEnvelope(envelope)) : envelope
      const receive = direct.receiverOf(server)
      return sync.matchEffect(
        receive !== undefined ? receive(received) : server.sendMessageToLocalEntityManagerWithoutRetries(received),
        (error) => Exit.fail(roundTripError(error)),
        (state) =>
          // A reply never comes back from a pod that crashed meanwhile: the outcome is unknown.
          crashed.has(key) || crashed.has(callerKey)
            ? Exit.fail(new ShardingException.PodUnavailableException({ podAddress: pod }))
            : Exit.succeed(serialize ? wire.decodeReply(wire.encodeReply(state)) : state)
      )
    }
    const pods: Pods = {
      assignShards: (pod, shards, epochs) => Effect.flatMap(reach(pod), (server) => server.assign(shards, epochs)),
      unassignShards: (pod, shards, epochs) => Effect.flatMap(reach(pod), (server) => server.unassign(shards, epochs)),
      ping: (pod) => Effect.asVoid(reach(pod)),
      sendAndGetState: (pod, envelope) => Effect.suspend(() => sendNow(pod, envelope))
    }
    direct.registerSender(pods, direct.sendThen(sendNow))
    return pods
  }

  const managerClientFor = (self: PodAddress, version: string): ShardManagerClient => {
    const reach = Effect.suspend(() =>
      manager === undefined || crashed.has(keyOf(self)) || partitioned.has(keyOf(self))
        ? Effect.fail(new ShardingException.ShardManagerUnavailableException())
        : Effect.succeed(manager)
    )
    return {
      register: (address) => Effect.flatMap(reach, (m) => m.register(new Pod({ address, version }))),
      unregister: (address) => Effect.flatMap(reach, (m) => m.unregister(address)),
      notifyUnhealthyPod: (address) => Effect.flatMap(reach, (m) => m.notifyUnhealthyPod(address)),
      getAssignments: Effect.flatMap(reach, (m) => m.getAssignments),
      heartbeat: (request) =>
        Effect.flatMap(reach, (m) => m.heartbeat(request)).pipe(
          // A grant lost on the way back (the pod crashed or was cut off meanwhile) was never received.
          Effect.filterOrFail(
            () => manager !== undefined && !crashed.has(keyOf(self)) && !partitioned.has(keyOf(self)),
            () => new ShardingException.ShardManagerUnavailableException()
          )
        ),
      getShardAssignments: Effect.flatMap(reach, (m) => m.getShardAssignments),
      getPods: Effect.flatMap(reach, (m) => m.getPods)
    }
  }

  return {
    serialize,
    crash: (address) => Effect.sync(() => void crashed.add(keyOf(address))),
    partitionFromManager: (address) => Effect.sync(() => void partitioned.add(keyOf(address))),
    heal: (address) => Effect.sync(() => void partitioned.delete(keyOf(address))),
    servePod: (sharding) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const key = keyOf(sharding.podAddress)
          crashed.delete(key)
          servers.set(key, sharding)
        }),
        () =>
          Effect.sync(() => {
            if (servers.get(keyOf(sharding.podAddress)) === sharding) servers.delete(keyOf(sharding.podAddress))
          })
      ),
    serveManager: (instance) =>
      Effect.acquireRelease(
        Effect.sync(() => void (manager = instance)),
        () => Effect.sync(() => void (manager === instance ? manager = undefined : undefined))
      ),
    podsFor,
    managerClientFor
  }
}

/**
 * A transport. `serialize` defaults to `true`: every cross-pod envelope, reply and error goes through JSON.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: { readonly serialize?: boolean | undefined }): Layer.Layer<InProcessTransport> =>
  Layer.sync(InProcessTransport, () => make(options))

/**
 * A pod's `Pods` and `ShardManagerClient` over the transport.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClients: Layer.Layer<
  Pods | ShardManagerClient,
  never,
  InProcessTransport | ShardingConfig.ShardingConfig
> = Layer.effectContext(Effect.gen(function*() {
  const transport = yield* InProcessTransport
  const config = yield* ShardingConfig.ShardingConfig
  const self = { host: config.selfHost, port: config.shardingPort } as PodAddress
  return Context.make(Pods, transport.podsFor(self)).pipe(
    Context.add(ShardManagerClient, transport.managerClientFor(self, config.serverVersion))
  )
}))

/**
 * Serves this pod's `Sharding` on the transport while the layer is alive.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServePod: Layer.Layer<never, never, InProcessTransport | Sharding.Sharding> = Layer.scopedDiscard(
  Effect.flatMap(Effect.all([InProcessTransport, Sharding.Sharding]), ([transport, sharding]) =>
    transport.servePod(sharding))
)

/**
 * Serves the `ShardManager` on the transport while the layer is alive.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServeManager: Layer.Layer<never, never, InProcessTransport | ShardManager.ShardManager> = Layer
  .scopedDiscard(
    Effect.flatMap(
      Effect.all([InProcessTransport, ShardManager.ShardManager]),
      ([transport, manager]) => transport.serveManager(manager)
    )
  )

/**
 * The manager's `Pods` client over the transport.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerManagerPods: Layer.Layer<Pods, never, InProcessTransport> = Layer.effect(
  Pods,
  Effect.map(InProcessTransport, (transport) => transport.podsFor("manager"))
)

/**
 * A whole pod on the transport: `Sharding.live` with JSON serialization, served at
 * `selfHost:shardingPort`. Registering it (`Sharding.register`) is up to the program.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPod = (
  config: Partial<ShardingConfig.ShardingConfig>
): Layer.Layer<Sharding.Sharding, never, InProcessTransport> =>
  layerServePod.pipe(
    Layer.provideMerge(Sharding.live),
    Layer.provide(layerClients),
    Layer.provide(Serialization.json),
    Layer.provide(ShardingConfig.withDefaults(config))
  )

/**
 * A shard manager on the transport, with `PodsHealth.local` (ping over the transport).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerManager = (
  config: Partial<ManagerConfig.ManagerConfig>
): Layer.Layer<ShardManager.ShardManager, StorageException, InProcessTransport | Storage> =>
  layerServeManager.pipe(
    Layer.provideMerge(ShardManager.live),
    Layer.provide(PodsHealth.local),
    Layer.provide(layerManagerPods),
    Layer.provide(ManagerConfig.withDefaults(config))
  )

/**
 * Everything a program needs besides its pods, in one layer: the transport and a shard manager served on
 * it, keeping its state in `Storage.memory`. With `makePod`, the least plumbing for several pods in one
 * process (tests, demos, a single-process deployment).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerCluster = (
  config?: Partial<ManagerConfig.ManagerConfig>
): Layer.Layer<InProcessTransport | ShardManager.ShardManager, StorageException> =>
  layerManager(config ?? {}).pipe(Layer.provideMerge(Layer.merge(layer(), StorageModule.memory)))

/**
 * Builds a pod on the transport in the current scope, runs `setup` with its `Sharding` (register entity
 * types, topics and singletons there), then registers it with the manager and returns once the manager's
 * round for it has run and the pod knows the other pods' shards. Closing the scope stops its entities and
 * unregisters it. Each pod needs its own `shardingPort` (its name on the transport).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makePod = <E = never, R = never>(
  config: Partial<ShardingConfig.ShardingConfig> & { readonly shardingPort: number },
  setup?: Effect.Effect<void, E, R>
): Effect.Effect<Sharding.Sharding, E, InProcessTransport | Scope.Scope | Exclude<R, Sharding.Sharding>> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layerPod(config))
    const sharding = Context.get(context, Sharding.Sharding)
    if (setup !== undefined) yield* Effect.provide(setup, context)
    yield* sharding.register
    // The manager's round for a new pod needs no clock in one process: let it run (a bounded number of
    // scheduler turns; none is given while a restarted manager waits), then renew once, so the pod starts
    // with every other pod's shards in its routing table rather than at its next heartbeat.
    for (let turn = 0; turn < 1000 && HashSet.size(yield* sharding.getAssignedShardIds) === 0; turn++) {
      yield* Effect.yieldNow()
    }
    yield* sharding.heartbeat
    return sharding
  })
