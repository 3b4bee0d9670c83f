/**
 * The per-pod runtime: registers entity types, routes messages to the pod owning their shard, runs the
 * local entities, holds shards under a lease renewed by heartbeat, and runs singletons.
 *
 * The data flow, one step per module under `internal/`: `messenger(type).send(entityId)(msg)` (`send.ts`:
 * `shardIdOf(entityId)`, the routing table of `routing.ts`, bounded retries) -> this pod's entity manager, or
 * `Pods.sendAndGetState` to the owner -> the owner's `receive.ts` checks it holds the shard at that epoch
 * under a valid lease, decodes, and hands the message to the entity's mailbox (`entityManager.ts`) -> the
 * reply. Shards come and go in `handoff.ts`, the lease is kept by `leaseWatchdog.ts`, singletons run from
 * `singletons.ts`, topics from `broadcast.ts`; `podState.ts` holds what they share.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Broadcaster } from "./Broadcaster.js"
import { makeBroadcast } from "./internal/broadcast.js"
import * as direct from "./internal/direct.js"
import { EntityManager, type EntityState } from "./internal/entityManager.js"
import { makeHandoff } from "./internal/handoff.js"
import { shardIdOf } from "./internal/hash.js"
import { makeLeaseWatchdog } from "./internal/leaseWatchdog.js"
import { PodState } from "./internal/podState.js"
import { makeReceive } from "./internal/receive.js"
import { makeRouting } from "./internal/routing.js"
import { makeMessenger } from "./internal/send.js"
import { makeSingletons } from "./internal/singletons.js"
import { TimerWheel } from "./internal/timerWheel.js"
import type * as MessageState from "./MessageState.js"
import type { Messenger } from "./Messenger.js"
import { PodAddress } from "./PodAddress.js"
import { Pods } from "./Pods.js"
import type { RecipientAddress } from "./RecipientAddress.js"
import type { EntityBehaviourOptions, RecipientBehaviour } from "./RecipientBehaviour.js"
import type { RecipientBehaviourContext } from "./RecipientBehaviourContext.js"
import type { EntityType, RecipientType, TopicType } from "./RecipientType.js"
import { Serialization } from "./Serialization.js"
import type { SerializedEnvelope } from "./SerializedEnvelope.js"
import type { SerializedMessage } from "./SerializedMessage.js"
import { ShardId } from "./ShardId.js"
import * as ShardingConfig from "./ShardingConfig.js"
import type { PodUnavailableException, ShardingException } from "./ShardingException.js"
import * as ShardingRegistrationEvent from "./ShardingRegistrationEvent.js"
import { ShardManagerClient } from "./ShardManagerClient.js"
import { PodLeases } from "./Storage.js"

/**
 * Why shards stop on a pod (see `Sharding.registerShardStop`): `"handoff"` while the pod still holds their
 * fences (the manager's revocation, the pod leaving), `"lost"` when it may not (a lease that ended, a newer
 * owner known).
 *
 * @since 0.1.0
 * @category models
 */
export type ShardStopKind = "handoff" | "lost"

/**
 * The per-pod sharding service. The 2024 members are kept; additions: `podAddress`, `getShardId` accepting
 * an entity id, `assign`/`unassign` taking the epochs, `localEntityCount`, `heartbeat`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sharding {
  /** This pod's address. */
  readonly podAddress: PodAddress
  /** Joins the cluster: registers with the manager and starts renewing the lease. */
  readonly register: Effect.Effect<void>
  /** Leaves gracefully: stops every entity (finalizers run), then tells the manager. */
  readonly unregister: Effect.Effect<void>
  /** `register` now, `unregister` when the scope closes. */
  readonly registerScoped: Effect.Effect<void, never, Scope.Scope>
  readonly messenger: <Msg>(entityType: EntityType<Msg>) => Messenger<Msg>
  readonly broadcaster: <Msg>(topicType: TopicType<Msg>) => Broadcaster<Msg>
  /** Whether this pod currently holds (under a valid lease) the shard of this address. */
  readonly isEntityOnLocalShards: (recipientAddress: RecipientAddress) => Effect.Effect<boolean>
  readonly isShuttingDown: Effect.Effect<boolean>
  readonly registerEntity: <Msg>(
    entityType: EntityType<Msg>
  ) => <R>(
    behaviour: RecipientBehaviour<Msg, R>,
    options?: EntityBehaviourOptions
  ) => Effect.Effect<void, never, Exclude<R, RecipientBehaviourContext>>
  readonly registerTopic: <Msg>(
    topicType: TopicType<Msg>
  ) => <R>(
    behaviour: RecipientBehaviour<Msg, R>,
    options?: EntityBehaviourOptions
  ) => Effect.Effect<void, never, Exclude<R, RecipientBehaviourContext>>
  readonly getShardingRegistrationEvents: Stream.Stream<ShardingRegistrationEvent.ShardingRegistrationEvent>
  /**
   * Registers a singleton: `run` runs on the pod that holds the shard of `name` (under a valid lease),
   * so on at most one pod at a time; it is interrupted when that shard leaves the pod and started where it
   * lands.
   */
  readonly registerSingleton: <R>(name: string, run: Effect.Effect<void, never, R>) => Effect.Effect<void, never, R>
  /**
   * Registers work of its own per shard to stop with the shards' entities: `stop` is called with the
   * shards this pod gives up (handed off, revoked, dropped at a lapsed lease, or the pod leaving) once it
   * no longer serves them, and the pod confirms their release to the manager only after it returned (or
   * after `entityTerminationTimeout`). So a shard's next owner does not start while this pod still runs
   * the shard's work (the cluster workflow engine's executions). `kind` says whether the pod still holds
   * the shards' fences until it confirms (`"handoff"`: the manager's revocation, the pod leaving), so that
   * work in flight may finish and record its results first, or has lost them (`"lost"`: a lease that
   * ended, a newer owner known): stop at once. Unregistered when the scope closes.
   */
  readonly registerShardStop: (
    stop: (shards: ReadonlyArray<number>, kind: ShardStopKind) => Effect.Effect<void>
  ) => Effect.Effect<void, never, Scope.Scope>
  /** Called by the manager (through the transport): this pod now owns `shards` at `epochs`. */
  readonly assign: (shards: HashSet.HashSet<ShardId>, epochs?: ReadonlyMap<number, number>) => Effect.Effect<void>
  /**
   * Called by the manager: stop the shards' entities, then return (the confirmation of the handoff). A
   * revocation below the epoch this pod holds means the manager lost its epochs: the pod stops the shard and
   * fails (as an unreachable pod would), confirming nothing it did not release.
   */
  readonly unassign: (
    shards: HashSet.HashSet<ShardId>,
    epochs?: ReadonlyMap<number, number>
  ) => Effect.Effect<void, PodUnavailableException>
  /** Delivers an envelope from another pod to a local entity (no retries: the sender retries). */
  readonly sendMessageToLocalEntityManagerWithoutRetries: (
    envelope: SerializedEnvelope
  ) => Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException>
  /** The pods known from the routing table (and this one). */
  readonly getPods: Effect.Effect<HashSet.HashSet<PodAddress>>
  /** The shards this pod holds. */
  readonly getAssignedShardIds: Effect.Effect<HashSet.HashSet<ShardId>>
  /**
   * The shards this pod may serve right now (held, under a lease still valid by its own clock, not shutting
   * down), each with the epoch it holds it at: what code that fences its own storage by shard epoch (the
   * cluster workflow engine) writes under.
   */
  readonly servedShardEpochs: Effect.Effect<ReadonlyMap<number, number>>
  /**
   * The shards this pod has stopped serving in a hand-off (`"handoff"` in `registerShardStop`: the manager's
   * revocation, the pod leaving) and whose stop still runs, each with the epoch it held it at (the highest,
   * when stops of one shard overlap). Their fences stay this pod's until the stop returns and the pod
   * confirms the release: code that fences its own storage by shard epoch (the cluster workflow engine) may
   * still record what its work there finishes meanwhile. A shard enters this map in the same step as it
   * leaves `servedShardEpochs` (no moment in between), and leaves it once its stop has returned.
   */
  readonly releasingShardEpochs: Effect.Effect<ReadonlyMap<number, number>>
  /**
   * `servedShardEpochs` now, then again after each change of the shards this pod holds (taken, lost,
   * released, dropped at a lapsed lease, or the pod shutting down): how code that follows the pod's shards
   * reacts at once instead of polling. Consecutive changes may arrive as one.
   */
  readonly servedShardEpochsChanges: Stream.Stream<ReadonlyMap<number, number>>
  /** Reloads the routing table from the manager. */
  readonly refreshAssignments: Effect.Effect<void>
  readonly getShardId: (entityIdOrAddress: string | RecipientAddress) => ShardId
  /** Renews the lease now (normally done every `leaseRenewalInterval`). */
  readonly heartbeat: Effect.Effect<void>
  /** Live entity and topic instances on this pod. */
  readonly localEntityCount: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category context
 */
export const Sharding: Context.Tag<Sharding, Sharding> = Context.GenericTag<Sharding>(
  "@effect-cluster/cluster/Sharding"
)

/**
 * The 2024 name of the `Sharding` tag.
 *
 * @since 0.1.0
 * @category context
 */
export const Tag: Context.Tag<Sharding, Sharding> = Sharding

const liveClock: Clock.Clock = Context.get(DefaultServices.liveServices, Clock.Clock)

/** Registers an entity or topic type on this pod: its entity manager and passivation wheel. */
const makeRegisterRecipient = (
  state: PodState,
  counter: { count: number },
  registrationEvents: PubSub.PubSub<ShardingRegistrationEvent.ShardingRegistrationEvent>
) =>
<Msg>(recipientType: RecipientType<Msg>) =>
<R>(
  behaviour: RecipientBehaviour<Msg, R>,
  options?: EntityBehaviourOptions
): Effect.Effect<void, never, Exclude<R, RecipientBehaviourContext>> =>
  Effect.gen(function*() {
    const { config } = state.services
    const context = yield* Effect.context<never>()
    const maxIdle = options?.entityMaxIdleTime !== undefined && options.entityMaxIdleTime._tag === "Some"
      ? options.entityMaxIdleTime.value
      : config.entityMaxIdleTime
    // One passivation wheel per entity type, on the monotonic clock, ticking at a tenth of its idle time.
    const maxIdleMillis = Duration.toMillis(maxIdle)
    const now = state.services.monotonicMillis
    const wheel = new TimerWheel<EntityState>(
      Math.min(1000, Math.max(10, maxIdleMillis / 10)),
      now,
      (entries) => {
        const at = now()
        for (const entity of entries) entity.manager.onWheel(entity, at)
      }
    )
    state.services.fork(wheel.run)
    state.entityManagers.set(
      recipientType.name,
      new EntityManager({
        recipientType: recipientType as RecipientType<unknown>,
        behaviour: behaviour as RecipientBehaviour<unknown, any>,
        context,
        maxIdleMillis,
        terminationTimeout: config.entityTerminationTimeout,
        mailboxCapacity: config.entityMailboxCapacity,
        deduplicationCapacity: config.entityDeduplicationCapacity,
        maxEntities: config.maxEntitiesPerPod,
        podAddress: state.services.self,
        counter,
        wheel,
        nowMillis: state.services.monotonicMillis,
        canServe: recipientType._tag === "TopicType" ? () => true : (shard) => state.canServe(shard, 0),
        epochOf: recipientType._tag === "TopicType" ? () => 0 : (shard) => state.heldEpoch[shard]!,
        fork: state.services.fork
      })
    )
    yield* PubSub.publish(
      registrationEvents,
      recipientType._tag === "EntityType"
        ? ShardingRegistrationEvent.EntityRegistered(recipientType)
        : ShardingRegistrationEvent.TopicRegistered(recipientType)
    )
  }) as any

/**
 * Builds the sharding service of this pod (scoped: background fibers and entities end with the scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  Sharding,
  never,
  Scope.Scope | ShardingConfig.ShardingConfig | Pods | ShardManagerClient | Serialization
> = Effect.gen(function*() {
  const config = yield* ShardingConfig.ShardingConfig
  yield* ShardingConfig.validate(config).pipe(Effect.orDie)
  const pods = yield* Pods
  const client = yield* ShardManagerClient
  const serialization = yield* Serialization
  const clock = yield* Effect.clock
  const runFork = yield* FiberSet.makeRuntime<never>()
  const self = new PodAddress({ host: config.selfHost, port: config.shardingPort })
  // With `PodLeases`, this process renews its own leases in the database under an incarnation of its own.
  const podLeases = yield* Effect.serviceOption(PodLeases)
  const leases = Option.isSome(podLeases)
    ? {
      storage: podLeases.value,
      incarnation: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}-${
        Math.random().toString(36).slice(2, 12)
      }`
    }
    : undefined

  const state = new PodState({
    config,
    self,
    pods,
    client,
    serialization,
    sendNow: direct.senderOf(pods) ??
      direct.sendThen((pod: PodAddress, envelope: SerializedEnvelope) => pods.sendAndGetState(pod, envelope)),
    // Monotonic time (Clock.currentTimeNanos) for leases; TestClock drives it in tests. With the live clock,
    // performance.now() (the same monotonic timeline, without the BigInt): it is read on every delivery.
    monotonicMillis: clock === liveClock
      ? () => performance.now()
      : () => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000,
    fork: (effect) => runFork(effect),
    leases
  }, config.entityTerminationTimeout)
  const { numberOfShards, selfKey } = state
  const counter = { count: 0 }
  const registrationEvents = yield* PubSub.unbounded<ShardingRegistrationEvent.ShardingRegistrationEvent>()

  // The steps, in the order a message meets them: routing, sending, receiving; then the shard life cycle.
  const routing = makeRouting(state)
  const receive = makeReceive(state)
  const messenger = makeMessenger(state, routing, receive)
  const topics = makeBroadcast(state, receive)
  const singletons = makeSingletons(state)
  const handoff = makeHandoff(state, routing, singletons)
  const lease = makeLeaseWatchdog(state, handoff, singletons)
  yield* lease.start

  // --- Registration of recipient types and singletons.
  const registerRecipient = makeRegisterRecipient(state, counter, registrationEvents)

  const registerSingleton = <R>(name: string, run: Effect.Effect<void, never, R>): Effect.Effect<void, never, R> =>
    Effect.gen(function*() {
      const context = yield* Effect.context<R>()
      singletons.add(name, shardIdOf(name, numberOfShards), Effect.provide(run, context))
      yield* PubSub.publish(registrationEvents, ShardingRegistrationEvent.SingletonRegistered(name))
      yield* singletons.sync()
    })

  const servedShardEpochs = Effect.sync(() => {
    const served = new Map<number, number>()
    for (const shard of state.heldShards()) if (state.canServe(shard, 0)) served.set(shard, state.heldEpoch[shard]!)
    return served
  })

  // --- Joining and leaving.
  const register: Effect.Effect<void> = Effect.gen(function*() {
    state.shuttingDown = false
    state.registered = true
    yield* lease.registerInDatabase
    yield* client.register(self).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not register with the shard manager; will retry", error))
    )
    yield* lease.heartbeat
  }).pipe(Effect.annotateLogs({ pod: selfKey }))

  const unregister: Effect.Effect<void> = Effect.gen(function*() {
    if (!state.registered) return
    // Hand-off: every entity has stopped (finalizers ran) before the manager hears we left. (The pod stops
    // serving its shards in the same step as it marks them released in a hand-off: `releasingShardEpochs`.)
    yield* handoff.stopEverything(() => {
      state.shuttingDown = true
      state.registered = false
    })
    yield* client.unregister(self).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not unregister; the lease will expire instead", error))
    )
  }).pipe(Effect.annotateLogs({ pod: selfKey }))

  yield* Effect.addFinalizer(() => Effect.zipRight(unregister, handoff.stopEverything()))

  const toShardIds = (set: Iterable<number>): HashSet.HashSet<ShardId> =>
    HashSet.fromIterable(Array.from(set, (value) => new ShardId({ value })))
  const shardNumbers = (shards: HashSet.HashSet<ShardId>): Array<number> => Array.from(shards, (shard) => shard.value)

  const sharding: Sharding = {
    podAddress: self,
    register,
    unregister,
    registerScoped: Effect.asVoid(Effect.acquireRelease(register, () => unregister)),
    messenger,
    broadcaster: topics.broadcaster,
    isEntityOnLocalShards: (address) =>
      Effect.sync(() => state.canServe(shardIdOf(address.entityId, numberOfShards), 0)),
    isShuttingDown: Effect.sync(() => state.shuttingDown),
    registerEntity: registerRecipient,
    registerTopic: registerRecipient,
    getShardingRegistrationEvents: Stream.fromPubSub(registrationEvents),
    registerSingleton,
    registerShardStop: (stop) =>
      Effect.asVoid(Effect.acquireRelease(
        Effect.sync(() => state.shardStoppers.add(stop)),
        () => Effect.sync(() => state.shardStoppers.delete(stop))
      )),
    assign: (shards, epochs) =>
      epochs === undefined ? lease.heartbeat : handoff.assign(shardNumbers(shards), epochs),
    unassign: (shards, epochs) => handoff.unassign(shardNumbers(shards), epochs),
    sendMessageToLocalEntityManagerWithoutRetries: (envelope) => Effect.suspend(() => receive.receiveNow(envelope)),
    getPods: Effect.sync(() => HashSet.fromIterable(topics.knownPods())),
    getAssignedShardIds: Effect.sync(() => toShardIds(state.heldShards())),
    servedShardEpochs,
    releasingShardEpochs: Effect.sync(() => handoff.releasingShardEpochs()),
    servedShardEpochsChanges: Stream.unwrapScoped(Effect.gen(function*() {
      const changes = yield* Queue.sliding<void>(1)
      yield* Effect.acquireRelease(
        Effect.sync(() => state.onHeldChange(() => void changes.unsafeOffer(undefined))),
        (stopListening) => Effect.sync(stopListening)
      )
      return Stream.concat(Stream.succeed(undefined), Stream.fromQueue(changes)).pipe(
        Stream.mapEffect(() => servedShardEpochs)
      )
    })),
    refreshAssignments: routing.refreshAssignments,
    getShardId: (entityIdOrAddress) =>
      new ShardId({
        value: shardIdOf(
          typeof entityIdOrAddress === "string" ? entityIdOrAddress : entityIdOrAddress.entityId,
          numberOfShards
        )
      }),
    heartbeat: lease.heartbeat,
    localEntityCount: Effect.sync(() => counter.count)
  }
  direct.registerReceiver(sharding, receive.receiveNow)
  return sharding
})

/**
 * The sharding service as a scoped layer (the 2024 requirements, minus `Storage`, which pods no longer
 * read).
 *
 * @since 0.1.0
 * @category layers
 */
export const live: Layer.Layer<
  Sharding,
  never,
  ShardingConfig.ShardingConfig | Pods | ShardManagerClient | Serialization
> = Layer.scoped(Sharding, make)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = live

/**
 * Registers this pod now and unregisters it (gracefully) when the scope closes.
 *
 * @since 0.1.0
 * @category accessors
 */
export const registerScoped: Effect.Effect<void, never, Sharding | Scope.Scope> = Effect.flatMap(
  Sharding,
  (_) => _.registerScoped
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const register: Effect.Effect<void, never, Sharding> = Effect.flatMap(Sharding, (_) => _.register)

/**
 * @since 0.1.0
 * @category accessors
 */
export const unregister: Effect.Effect<void, never, Sharding> = Effect.flatMap(Sharding, (_) => _.unregister)

/**
 * @since 0.1.0
 * @category accessors
 */
export const registerSingleton = <R>(
  name: string,
  run: Effect.Effect<void, never, R>
): Effect.Effect<void, never, Sharding | R> => Effect.flatMap(Sharding, (_) => _.registerSingleton(name, run))

/**
 * Registers an entity type on this pod with its behaviour.
 *
 * @since 0.1.0
 * @category accessors
 */
export const registerEntity = <Msg>(entityType: EntityType<Msg>) =>
<R>(
  behaviour: RecipientBehaviour<Msg, R>,
  options?: EntityBehaviourOptions
): Effect.Effect<void, never, Sharding | Exclude<R, RecipientBehaviourContext>> =>
  Effect.flatMap(Sharding, (_) => _.registerEntity(entityType)(behaviour, options))

/**
 * Registers a topic type on this pod with its behaviour.
 *
 * @since 0.1.0
 * @category accessors
 */
export const registerTopic = <Msg>(topicType: TopicType<Msg>) =>
<R>(
  behaviour: RecipientBehaviour<Msg, R>,
  options?: EntityBehaviourOptions
): Effect.Effect<void, never, Sharding | Exclude<R, RecipientBehaviourContext>> =>
  Effect.flatMap(Sharding, (_) => _.registerTopic(topicType)(behaviour, options))

/**
 * @since 0.1.0
 * @category accessors
 */
export const messenger = <Msg>(entityType: EntityType<Msg>): Effect.Effect<Messenger<Msg>, never, Sharding> =>
  Effect.map(Sharding, (_) => _.messenger(entityType))

/**
 * @since 0.1.0
 * @category accessors
 */
export const broadcaster = <Msg>(topicType: TopicType<Msg>): Effect.Effect<Broadcaster<Msg>, never, Sharding> =>
  Effect.map(Sharding, (_) => _.broadcaster(topicType))

/**
 * @since 0.1.0
 * @category accessors
 */
export const getPods: Effect.Effect<HashSet.HashSet<PodAddress>, never, Sharding> = Effect.flatMap(
  Sharding,
  (_) => _.getPods
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const sendMessageToLocalEntityManagerWithoutRetries = (
  envelope: SerializedEnvelope
): Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException, Sharding> =>
  Effect.flatMap(Sharding, (_) => _.sendMessageToLocalEntityManagerWithoutRetries(envelope))

/**
 * @since 0.1.0
 * @category accessors
 */
export const getAssignedShardIds: Effect.Effect<HashSet.HashSet<ShardId>, never, Sharding> = Effect.flatMap(
  Sharding,
  (_) => _.getAssignedShardIds
)

/**
 * The shard of an entity id (or address) with this pod's `numberOfShards`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const getShardId = (entityIdOrAddress: string | RecipientAddress): Effect.Effect<ShardId, never, Sharding> =>
  Effect.map(Sharding, (_) => _.getShardId(entityIdOrAddress))
