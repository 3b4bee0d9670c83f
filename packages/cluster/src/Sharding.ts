/**
 * The per-pod runtime: registers entity types, routes messages to the pod owning their shard, runs the
 * local entities, holds shards under a lease renewed by heartbeat, and runs singletons.
 *
 * The data flow, top to bottom in this file: `messenger(type).send(entityId)(msg)` -> `shardIdOf(entityId)`
 * -> routing table (owner pod + epoch) -> this pod's entity manager, or `Pods.sendAndGetState` to the owner
 * -> the owner's `sendMessageToLocalEntityManagerWithoutRetries` checks it holds the shard at that epoch
 * under a valid lease -> the entity's mailbox -> the reply.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import { identity } from "effect/Function"
import * as HashMap from "effect/HashMap"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Broadcaster } from "./Broadcaster.js"
import * as direct from "./internal/direct.js"
import { EntityManager, type EntityState } from "./internal/entityManager.js"
import * as sync from "./internal/exit.js"
import { exitSchemaOf } from "./internal/exitSchema.js"
import * as models from "./internal/models.js"
import { shardIdOf } from "./internal/hash.js"
import { primaryKeyOf } from "./internal/primaryKey.js"
import { TimerWheel } from "./internal/timerWheel.js"
import * as MessageState from "./MessageState.js"
import type { Messenger } from "./Messenger.js"
import { PodAddress } from "./PodAddress.js"
import { Pods } from "./Pods.js"
import { RecipientAddress } from "./RecipientAddress.js"
import type { EntityBehaviourOptions, RecipientBehaviour } from "./RecipientBehaviour.js"
import type { RecipientBehaviourContext } from "./RecipientBehaviourContext.js"
import type { EntityType, RecipientType, TopicType } from "./RecipientType.js"
import { Serialization } from "./Serialization.js"
import { SerializedEnvelope } from "./SerializedEnvelope.js"
import type { SerializedMessage } from "./SerializedMessage.js"
import { HeartbeatRequest, type LeaseGrant, type ShardAssignment } from "./ShardAssignment.js"
import { ShardId } from "./ShardId.js"
import * as ShardingConfig from "./ShardingConfig.js"
import type { ShardingException } from "./ShardingException.js"
import {
  EntityNotManagedByThisPodException,
  EntityTypeNotRegisteredException,
  MessageNotDeliveredException,
  MessageOutcomeUnknownException,
  SerializationException
} from "./ShardingException.js"
import * as ShardingRegistrationEvent from "./ShardingRegistrationEvent.js"
import { ShardManagerClient } from "./ShardManagerClient.js"

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
  /** Called by the manager (through the transport): this pod now owns `shards` at `epochs`. */
  readonly assign: (shards: HashSet.HashSet<ShardId>, epochs?: ReadonlyMap<number, number>) => Effect.Effect<void>
  /** Called by the manager: stop the shards' entities, then return (the confirmation of the handoff). */
  readonly unassign: (shards: HashSet.HashSet<ShardId>, epochs?: ReadonlyMap<number, number>) => Effect.Effect<void>
  /** Delivers an envelope from another pod to a local entity (no retries: the sender retries). */
  readonly sendMessageToLocalEntityManagerWithoutRetries: (
    envelope: SerializedEnvelope
  ) => Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException>
  /** The pods known from the routing table (and this one). */
  readonly getPods: Effect.Effect<HashSet.HashSet<PodAddress>>
  /** The shards this pod holds. */
  readonly getAssignedShardIds: Effect.Effect<HashSet.HashSet<ShardId>>
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

interface Route {
  readonly pod: PodAddress | undefined
  readonly podKey: string
  readonly epoch: number
}

interface Singleton {
  readonly name: string
  readonly shardId: number
  readonly run: Effect.Effect<void>
  fiber: Fiber.RuntimeFiber<void> | undefined
}

const acknowledged = Exit.succeed(MessageState.Acknowledged)

const liveClock: Clock.Clock = Context.get(DefaultServices.liveServices, Clock.Clock)

const podKeyOf = (address: PodAddress): string => `${address.host}:${address.port}`

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
  const fork = (effect: Effect.Effect<void>): Fiber.RuntimeFiber<void> => runFork(effect)

  // The transport's immediate send when it has one (in-process pods), else its suspended one.
  const sendNow = direct.senderOf(pods) ??
    ((pod: PodAddress, envelope: SerializedEnvelope) => pods.sendAndGetState(pod, envelope))

  const self = new PodAddress({ host: config.selfHost, port: config.shardingPort })
  const selfKey = podKeyOf(self)
  const numberOfShards = config.numberOfShards
  const terminationMillis = Duration.toMillis(config.entityTerminationTimeout)
  const leaseMillis = Duration.toMillis(config.leaseDuration)
  const retryTimeoutMillis = Duration.toMillis(config.sendRetryTimeout)

  // Monotonic time (Clock.currentTimeNanos) for leases; TestClock drives it in tests. With the live clock,
  // performance.now() (the same monotonic timeline, without the BigInt): it is read on every delivery.
  const monotonicMillis: () => number = clock === liveClock
    ? () => performance.now()
    : () => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
  const idleMillis = (): number => clock.unsafeCurrentTimeMillis()

  // --- State. Plain mutable structures, touched only synchronously inside effects, so fibers never see a
  // half-applied update. Shard numbers index the arrays (0 unused); epoch 0 means "none".
  const routing: Array<Route | undefined> = new Array(numberOfShards + 1)
  const heldEpoch = new Float64Array(numberOfShards + 1)
  const releasedEpoch = new Float64Array(numberOfShards + 1)
  let leaseEnd = Number.NEGATIVE_INFINITY // monotonic ms: no work after leaseEnd - terminationMillis
  let registered = false
  let shuttingDown = false
  const entityManagers = new Map<string, EntityManager>()
  const singletons: Array<Singleton> = []
  const counter = { count: 0 }
  const lastUnhealthyReport = new Map<string, number>()
  const registrationEvents = yield* PubSub.unbounded<ShardingRegistrationEvent.ShardingRegistrationEvent>()

  const wheel = new TimerWheel<EntityState>(
    Math.min(1000, Math.max(10, Duration.toMillis(config.entityMaxIdleTime) / 10)),
    idleMillis,
    (entries) => {
      const now = idleMillis()
      for (const entity of entries) entity.manager.onWheel(entity, now)
    }
  )
  yield* Effect.forkScoped(wheel.run)

  const leaseValid = (): boolean => monotonicMillis() < leaseEnd - terminationMillis

  // A pod serves a shard only while it holds it at (or after) the sender's epoch, under a valid lease.
  const canServe = (shard: number, epoch: number): boolean => {
    const held = heldEpoch[shard]!
    return held !== 0 && epoch <= held && !shuttingDown && leaseValid()
  }

  const stopEntitiesOfShards = (shards: ReadonlyArray<number>): Effect.Effect<void> =>
    Effect.forEach(
      Array.from(entityManagers.values()).filter((manager) => !manager.isTopic),
      (manager) => Effect.forEach(shards, (shard) => manager.stopShard(shard), { concurrency: "unbounded", discard: true }),
      { concurrency: "unbounded", discard: true }
    )

  // --- Singletons: run where their shard is held under a valid lease.
  const syncSingletons = (): Effect.Effect<void> =>
    Effect.forEach(singletons, (singleton) => {
      const shouldRun = registered && canServe(singleton.shardId, 0)
      if (shouldRun && singleton.fiber === undefined) {
        singleton.fiber = runFork(singleton.run.pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("singleton failed", cause)
          ),
          Effect.annotateLogs({ singleton: singleton.name })
        ))
        return Effect.void
      }
      if (!shouldRun && singleton.fiber !== undefined) {
        const fiber = singleton.fiber
        singleton.fiber = undefined
        return Fiber.interrupt(fiber).pipe(Effect.timeout(config.entityTerminationTimeout), Effect.ignore)
      }
      return Effect.void
    }, { discard: true })

  // --- Shard ownership changes.
  const takeShard = (shard: number, epoch: number): boolean => {
    if (!registered || shuttingDown) return false
    if (epoch <= releasedEpoch[shard]!) return false
    const route = routing[shard]
    if (route !== undefined && epoch < route.epoch) return false
    if (epoch < heldEpoch[shard]!) return false
    heldEpoch[shard] = epoch
    routing[shard] = { pod: self, podKey: selfKey, epoch }
    return true
  }

  const updateRoute = (assignment: ShardAssignment): void => {
    const route = routing[assignment.shardId]
    if (route === undefined || route.epoch <= assignment.epoch) {
      routing[assignment.shardId] = assignment.pod === null
        ? { pod: undefined, podKey: "", epoch: assignment.epoch }
        : { pod: assignment.pod, podKey: podKeyOf(assignment.pod), epoch: assignment.epoch }
    }
  }

  const applyGrant = (grant: LeaseGrant, sentAt: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      // The lease runs from when the heartbeat was *sent*: the manager granted it later than that.
      const end = sentAt + Math.min(leaseMillis, grant.leaseDurationMillis)
      if (end > leaseEnd) leaseEnd = end
      const lost: Array<number> = []
      for (const assignment of grant.assignments) {
        const shard = assignment.shardId
        if (shard < 1 || shard > numberOfShards) continue
        updateRoute(assignment)
        const mine = assignment.pod !== null && podKeyOf(assignment.pod) === selfKey
        if (mine) {
          takeShard(shard, assignment.epoch)
        } else if (heldEpoch[shard]! !== 0 && assignment.epoch >= heldEpoch[shard]!) {
          // The manager has the shard elsewhere (or nowhere) at our epoch or later: stop serving it.
          heldEpoch[shard] = 0
          lost.push(shard)
        }
        if (releasedEpoch[shard]! !== 0 && assignment.epoch > releasedEpoch[shard]!) {
          releasedEpoch[shard] = 0 // the manager has moved past our release
        }
      }
      return Effect.zipRight(stopEntitiesOfShards(lost), syncSingletons())
    })

  const dropAllShards = (reason: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const dropped: Array<number> = []
      for (let shard = 1; shard <= numberOfShards; shard++) {
        if (heldEpoch[shard]! !== 0) {
          heldEpoch[shard] = 0
          dropped.push(shard)
        }
      }
      if (dropped.length === 0) return syncSingletons()
      return Effect.logWarning(`dropping ${dropped.length} shards: ${reason}`).pipe(
        Effect.zipRight(stopEntitiesOfShards(dropped)),
        Effect.zipRight(syncSingletons())
      )
    })

  // --- Lease renewal (heartbeat). A grant also refreshes the whole routing table.
  let heartbeatInFlight: Effect.Effect<void> | undefined
  const heartbeatOnce: Effect.Effect<void> = Effect.suspend(() => {
    if (heartbeatInFlight !== undefined) return heartbeatInFlight
    const run = Effect.gen(function*() {
      if (!registered || shuttingDown) return
      const released: Array<{ shardId: number; epoch: number }> = []
      for (let shard = 1; shard <= numberOfShards; shard++) {
        if (releasedEpoch[shard]! !== 0) released.push({ shardId: shard, epoch: releasedEpoch[shard]! })
      }
      const sentAt = monotonicMillis()
      const result = yield* Effect.either(
        client.heartbeat(new HeartbeatRequest({ podAddress: self, version: config.serverVersion, released }))
      )
      if (Either.isRight(result)) {
        if (registered && !shuttingDown) yield* applyGrant(result.right, sentAt)
        return
      }
      const error = result.left
      if (error._tag === "@effect-cluster/cluster/PodNoLongerRegisteredException") {
        // The manager declared this pod dead (its lease had ended): drop everything, join again.
        yield* dropAllShards("the shard manager no longer knows this pod")
        if (registered && !shuttingDown) {
          yield* client.register(self).pipe(
            Effect.zipRight(Effect.suspend(() => {
              heartbeatInFlight = undefined
              return heartbeatOnce
            })),
            Effect.catchAll((error) => Effect.logWarning("could not register again", error))
          )
        }
      } else {
        yield* Effect.logDebug("lease renewal failed: shard manager unavailable")
      }
    }).pipe(Effect.ensuring(Effect.sync(() => void (heartbeatInFlight = undefined))))
    const cached = Effect.runSync(Effect.cached(run))
    heartbeatInFlight = cached
    return cached
  })

  yield* Effect.forkScoped(
    Effect.forever(Effect.zipRight(heartbeatOnce, Effect.sleep(config.leaseRenewalInterval))).pipe(
      Effect.annotateLogs({ pod: selfKey, fiber: "heartbeat" })
    )
  )

  // The lease watchdog: when the lease is about to end (lease end minus entityTerminationTimeout) without a
  // renewal, stop every entity and singleton so they have all stopped by the lease end.
  yield* Effect.forkScoped(
    Effect.forever(Effect.suspend(() => {
      const now = monotonicMillis()
      const stopAt = leaseEnd - terminationMillis
      if (now >= stopAt) {
        let holdsAny = false
        for (let shard = 1; shard <= numberOfShards && !holdsAny; shard++) holdsAny = heldEpoch[shard]! !== 0
        const running = singletons.some((singleton) => singleton.fiber !== undefined)
        const drop = holdsAny || running ? dropAllShards("lease not renewed in time") : Effect.void
        return Effect.zipRight(drop, Effect.sleep(config.leaseRenewalInterval))
      }
      return Effect.sleep(Duration.millis(stopAt - now))
    })).pipe(Effect.annotateLogs({ pod: selfKey, fiber: "lease-watchdog" }))
  )

  // --- Routing table refresh (coalesced: concurrent failures share one request).
  let refreshInFlight: Effect.Effect<void> | undefined
  const refreshAssignments: Effect.Effect<void> = Effect.suspend(() => {
    if (refreshInFlight !== undefined) return refreshInFlight
    const run = client.getShardAssignments.pipe(
      Effect.map((assignments) => {
        for (const assignment of assignments) {
          if (assignment.shardId >= 1 && assignment.shardId <= numberOfShards) updateRoute(assignment)
        }
      }),
      Effect.catchAll(() => Effect.void),
      Effect.ensuring(Effect.sync(() => void (refreshInFlight = undefined)))
    )
    const cached = Effect.runSync(Effect.cached(run))
    refreshInFlight = cached
    return cached
  })

  const reportUnhealthy = (pod: PodAddress): void => {
    const key = podKeyOf(pod)
    const now = monotonicMillis()
    const last = lastUnhealthyReport.get(key)
    if (last !== undefined && now - last < Duration.toMillis(config.unhealthyPodReportInterval)) return
    lastUnhealthyReport.set(key, now)
    fork(Effect.ignore(client.notifyUnhealthyPod(pod)))
  }

  // --- Local delivery.
  const notRegistered = (typeName: string) =>
    Exit.fail(new EntityTypeNotRegisteredException({ entityType: typeName, podAddress: self }))

  const deliverLocal = (
    typeName: string,
    entityId: string,
    shard: number,
    epoch: number,
    message: unknown,
    messageId: string | undefined
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> => {
    const manager = entityManagers.get(typeName)
    if (manager === undefined) return notRegistered(typeName)
    if (!manager.isTopic && !canServe(shard, epoch)) {
      return Exit.fail(
        new EntityNotManagedByThisPodException({
          recipientAddress: new RecipientAddress({ recipientTypeName: typeName, entityId })
        })
      )
    }
    return manager.deliver(entityId, shard, message, messageId)
  }

  const replyError = (error: SerializationException) => new SerializationException({ error: error.error, stage: "reply" })

  // The receiving side of a cross-pod send: decode the body once, deliver, encode the reply once. Each step
  // that completes synchronously (JSON serialization, a handler answering with an Exit) is continued
  // without a fiber operation.
  const receiveNow = (
    envelope: SerializedEnvelope
  ): Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException> => {
    const address = envelope.recipientAddress
    const manager = entityManagers.get(address.recipientTypeName)
    if (manager === undefined) return notRegistered(address.recipientTypeName)
    const shard = shardIdOf(address.entityId, numberOfShards)
    if (!manager.isTopic && !canServe(shard, envelope.epoch)) {
      return Exit.fail(new EntityNotManagedByThisPodException({ recipientAddress: address }))
    }
    const messageId = envelope.messageId === "" ? undefined : envelope.messageId
    return sync.flatMap(
      serialization.decode(manager.options.recipientType.schema, envelope.body),
      (message) =>
        sync.flatMap(
          manager.deliver(address.entityId, shard, message, messageId),
          (state): Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException> =>
            MessageState.isProcessed(state)
              ? sync.mapBoth(
                serialization.encode(exitSchemaOf(message as object), state.result),
                replyError,
                MessageState.Processed
              )
              : acknowledged
        )
    )
  }

  const sendMessageToLocalEntityManagerWithoutRetries = (
    envelope: SerializedEnvelope
  ): Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException> =>
    Effect.suspend(() => receiveNow(envelope))

  const decodeReply = (
    message: unknown,
    state: MessageState.MessageState<SerializedMessage>
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, SerializationException> =>
    MessageState.isProcessed(state)
      ? sync.mapBoth(
        serialization.decode(exitSchemaOf(message as object), state.result),
        replyError,
        (exit): MessageState.MessageState<Exit.Exit<unknown, unknown>> => MessageState.Processed(exit)
      )
      : acknowledged

  // --- Sending, with bounded retries of routing failures.
  const isRetryable = (error: ShardingException): boolean =>
    error._tag === "@effect-cluster/cluster/EntityNotManagedByThisPodException" ||
    error._tag === "@effect-cluster/cluster/PodUnavailableException"

  const deliverOnce = (
    recipientType: RecipientType<unknown>,
    entityId: string,
    shard: number,
    message: unknown,
    messageId: string | undefined,
    body: { value: SerializedMessage | undefined }
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> => {
    const route = routing[shard]
    if (route === undefined || route.pod === undefined) {
      return Exit.fail(
        new EntityNotManagedByThisPodException({
          recipientAddress: new RecipientAddress({ recipientTypeName: recipientType.name, entityId })
        })
      )
    }
    if (route.podKey === selfKey) {
      // Local path: no serialization.
      return deliverLocal(recipientType.name, entityId, shard, route.epoch, message, messageId)
    }
    const pod = route.pod
    // The body is encoded once per send, whatever the number of attempts.
    const encoded: Effect.Effect<SerializedMessage, SerializationException> = body.value !== undefined
      ? Exit.succeed(body.value)
      : sync.mapBoth(serialization.encode(recipientType.schema, message), identity, (value) => (body.value = value))
    return sync.flatMap(encoded, (value) =>
      sync.matchEffect(
        sendNow(
          pod,
          // Built from values already typed: no validation pass.
          models.serializedEnvelope(
            models.recipientAddress(recipientType.name, entityId),
            messageId ?? "",
            value,
            route.epoch
          )
        ),
        (error) => {
          if (error._tag === "@effect-cluster/cluster/PodUnavailableException") reportUnhealthy(pod)
          return Exit.fail(error)
        },
        (state) => decodeReply(message, state)
      ))
  }

  // One send with its retries. Started while the send runs (never when its effect is built): the first
  // attempt is made at once, and completes without fiber operations when everything on the way answers
  // synchronously. (A class, not per-send closures: less allocation on the hot path.)
  class Delivery {
    readonly shard: number
    readonly messageId: string | undefined
    readonly body = { value: undefined as SerializedMessage | undefined }
    private retry: Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> | undefined =
      undefined
    attempts = 0
    firstFailureAt: number | undefined = undefined
    outcomeUnknown = false

    constructor(
      readonly recipientType: RecipientType<unknown>,
      readonly entityId: string,
      readonly message: unknown,
      readonly awaitResult: boolean
    ) {
      this.shard = shardIdOf(entityId, numberOfShards)
      this.messageId = primaryKeyOf(message)
    }

    // The next attempt, as an effect (built only when a retry is needed).
    get loop(): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> {
      return this.retry ??= Effect.suspend(() => this.attempt())
    }

    attempt(): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> {
      this.attempts++
      return sync.matchEffect(
        deliverOnce(this.recipientType, this.entityId, this.shard, this.message, this.messageId, this.body),
        (error) => this.onFailure(error),
        (state) => this.onSuccess(state)
      )
    }

    onFailure(error: ShardingException): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> {
      if (!isRetryable(error)) return Exit.fail(error)
      const now = monotonicMillis()
      this.firstFailureAt ??= now
      if (error._tag === "@effect-cluster/cluster/PodUnavailableException") this.outcomeUnknown = true
      if (now - this.firstFailureAt >= retryTimeoutMillis) {
        const recipientAddress = new RecipientAddress({ recipientTypeName: this.recipientType.name, entityId: this.entityId })
        const attempts = this.attempts
        const reason = `${error._tag.replace("@effect-cluster/cluster/", "")} after ${attempts} attempts`
        return Exit.fail(
          this.outcomeUnknown
            ? new MessageOutcomeUnknownException({ recipientAddress, attempts, reason })
            : new MessageNotDeliveredException({ recipientAddress, attempts, reason })
        )
      }
      // First failure: the routing table is probably stale; refresh it and retry at once. Later
      // failures wait sendRetryInterval between attempts (the shard may be moving).
      if (this.attempts === 1) return Effect.zipRight(refreshAssignments, this.loop)
      fork(refreshAssignments)
      return Effect.zipRight(Effect.sleep(config.sendRetryInterval), this.loop)
    }

    onSuccess(
      state: MessageState.MessageState<Exit.Exit<unknown, unknown>>
    ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> {
      if (this.awaitResult && !MessageState.isProcessed(state)) {
        // Acknowledged: the entity queued it. Ask again (deduplicated by primary key) until the
        // result is there; the caller bounds the wait (e.g. Effect.timeout).
        this.firstFailureAt = undefined
        return Effect.zipRight(Effect.sleep(config.sendRetryInterval), this.loop)
      }
      return Exit.succeed(state)
    }
  }

  const deliverWithRetries = (
    recipientType: RecipientType<unknown>,
    entityId: string,
    message: unknown,
    awaitResult: boolean
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> =>
    new Delivery(recipientType, entityId, message, awaitResult).attempt()

  const toResult = (state: MessageState.MessageState<Exit.Exit<unknown, unknown>>) =>
    (state as MessageState.MessageStateProcessed<Exit.Exit<any, any>>).result

  // The common case: the entity is on this pod, which serves its shard. One delivery, no retry machinery;
  // anything else (remote, routing failure, acknowledged) goes through deliverWithRetries. Called inside the
  // send's own effect (never when the effect is built), so a send effect run twice sends twice.
  const sendFast = (
    recipientType: RecipientType<unknown>,
    entityId: string,
    message: unknown,
    awaitResult: boolean
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> => {
    const shard = shardIdOf(entityId, numberOfShards)
    const route = routing[shard]
    const manager = entityManagers.get(recipientType.name)
    if (route === undefined || route.podKey !== selfKey || manager === undefined || !canServe(shard, route.epoch)) {
      return deliverWithRetries(recipientType, entityId, message, awaitResult)
    }
    return sync.matchEffect(
      manager.deliver(entityId, shard, message, primaryKeyOf(message)),
      (error) =>
        isRetryable(error) ? deliverWithRetries(recipientType, entityId, message, awaitResult) : Exit.fail(error),
      (state) =>
        awaitResult && !MessageState.isProcessed(state)
          ? deliverWithRetries(recipientType, entityId, message, awaitResult)
          : Exit.succeed(state)
    )
  }

  const messenger = <Msg>(entityType: EntityType<Msg>): Messenger<Msg> => ({
    sendDiscard: (entityId) => (message) =>
      Effect.suspend(() => {
        const sent = sendFast(entityType as RecipientType<unknown>, entityId, message, false)
        return sync.isExit(sent) && Exit.isSuccess(sent) ? Exit.void : Effect.asVoid(sent)
      }),
    send: (entityId) => (message) =>
      Effect.suspend(() =>
        // A synchronous answer is returned as the message's own Exit (no flatMap).
        sync.flatMap(sendFast(entityType as RecipientType<unknown>, entityId, message, true), toResult)
      ) as any
  })

  const getPodsSync = (): Array<PodAddress> => {
    const result = new Map<string, PodAddress>([[selfKey, self]])
    for (let shard = 1; shard <= numberOfShards; shard++) {
      const route = routing[shard]
      if (route?.pod !== undefined && !result.has(route.podKey)) result.set(route.podKey, route.pod)
    }
    return Array.from(result.values())
  }

  const broadcastTo = (
    topicType: TopicType<unknown>,
    topicId: string,
    message: unknown,
    pod: PodAddress
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> => {
    const messageId = primaryKeyOf(message)
    if (podKeyOf(pod) === selfKey) {
      return deliverLocal(topicType.name, topicId, shardIdOf(topicId, numberOfShards), 0, message, messageId)
    }
    return serialization.encode(topicType.schema, message).pipe(
      Effect.flatMap((body) =>
        pods.sendAndGetState(
          pod,
          new SerializedEnvelope({
            recipientAddress: new RecipientAddress({ recipientTypeName: topicType.name, entityId: topicId }),
            messageId: messageId ?? "",
            body,
            epoch: 0
          })
        )
      ),
      Effect.flatMap((state) => decodeReply(message, state))
    )
  }

  const broadcaster = <Msg>(topicType: TopicType<Msg>): Broadcaster<Msg> => ({
    broadcastDiscard: (topicId) => (message) =>
      Effect.forEach(
        getPodsSync(),
        (pod) => Effect.ignore(broadcastTo(topicType as TopicType<unknown>, topicId, message, pod)),
        { concurrency: "unbounded", discard: true }
      ),
    broadcast: (topicId) => (message) =>
      Effect.map(
        Effect.forEach(
          getPodsSync(),
          (pod) =>
            broadcastTo(topicType as TopicType<unknown>, topicId, message, pod).pipe(
              Effect.flatMap((state) =>
                MessageState.isProcessed(state)
                  ? state.result as Effect.Effect<any, any>
                  : Effect.fail(new EntityNotManagedByThisPodException({
                    recipientAddress: new RecipientAddress({ recipientTypeName: topicType.name, entityId: topicId })
                  }))
              ),
              Effect.either,
              Effect.map((result) => [pod, result] as const)
            ),
          { concurrency: "unbounded" }
        ),
        (entries) => HashMap.fromIterable(entries) as any
      )
  })

  // --- Registration of recipient types and singletons.
  const registerRecipient = <Msg>(recipientType: RecipientType<Msg>) =>
  <R>(
    behaviour: RecipientBehaviour<Msg, R>,
    options?: EntityBehaviourOptions
  ): Effect.Effect<void, never, Exclude<R, RecipientBehaviourContext>> =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const maxIdle = options?.entityMaxIdleTime !== undefined && options.entityMaxIdleTime._tag === "Some"
        ? options.entityMaxIdleTime.value
        : config.entityMaxIdleTime
      entityManagers.set(
        recipientType.name,
        new EntityManager({
          recipientType: recipientType as RecipientType<unknown>,
          behaviour: behaviour as RecipientBehaviour<unknown, any>,
          context,
          maxIdleMillis: Duration.toMillis(maxIdle),
          terminationTimeout: config.entityTerminationTimeout,
          mailboxCapacity: config.entityMailboxCapacity,
          deduplicationCapacity: config.entityDeduplicationCapacity,
          maxEntities: config.maxEntitiesPerPod,
          podAddress: self,
          counter,
          wheel,
          nowMillis: idleMillis,
          fork
        })
      )
      yield* PubSub.publish(
        registrationEvents,
        recipientType._tag === "EntityType"
          ? ShardingRegistrationEvent.EntityRegistered(recipientType)
          : ShardingRegistrationEvent.TopicRegistered(recipientType)
      )
    }) as any

  const registerSingleton = <R>(name: string, run: Effect.Effect<void, never, R>): Effect.Effect<void, never, R> =>
    Effect.gen(function*() {
      const context = yield* Effect.context<R>()
      singletons.push({
        name,
        shardId: shardIdOf(name, numberOfShards),
        run: Effect.provide(run, context),
        fiber: undefined
      })
      yield* PubSub.publish(registrationEvents, ShardingRegistrationEvent.SingletonRegistered(name))
      yield* syncSingletons()
    })

  // --- Joining and leaving.
  const register: Effect.Effect<void> = Effect.gen(function*() {
    shuttingDown = false
    registered = true
    yield* client.register(self).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not register with the shard manager; will retry", error))
    )
    yield* heartbeatOnce
  }).pipe(Effect.annotateLogs({ pod: selfKey }))

  const stopEverything: Effect.Effect<void> = Effect.suspend(() => {
    for (let shard = 1; shard <= numberOfShards; shard++) {
      if (heldEpoch[shard]! !== 0) {
        if (heldEpoch[shard]! > releasedEpoch[shard]!) releasedEpoch[shard] = heldEpoch[shard]!
        heldEpoch[shard] = 0
      }
    }
    return Effect.zipRight(
      syncSingletons(),
      Effect.forEach(entityManagers.values(), (manager) => manager.stopAll(), {
        concurrency: "unbounded",
        discard: true
      })
    )
  })

  const unregister: Effect.Effect<void> = Effect.gen(function*() {
    if (!registered) return
    shuttingDown = true
    registered = false
    // Hand-off: every entity has stopped (finalizers ran) before the manager hears we left.
    yield* stopEverything
    yield* client.unregister(self).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not unregister; the lease will expire instead", error))
    )
  }).pipe(Effect.annotateLogs({ pod: selfKey }))

  yield* Effect.addFinalizer(() => Effect.zipRight(unregister, stopEverything))

  const toShardIds = (set: Iterable<number>): HashSet.HashSet<ShardId> =>
    HashSet.fromIterable(Array.from(set, (value) => new ShardId({ value })))

  const sharding: Sharding = {
    podAddress: self,
    register,
    unregister,
    registerScoped: Effect.asVoid(Effect.acquireRelease(register, () => unregister)),
    messenger,
    broadcaster,
    isEntityOnLocalShards: (address) =>
      Effect.sync(() => canServe(shardIdOf(address.entityId, numberOfShards), 0)),
    isShuttingDown: Effect.sync(() => shuttingDown),
    registerEntity: registerRecipient,
    registerTopic: registerRecipient,
    getShardingRegistrationEvents: Stream.fromPubSub(registrationEvents),
    registerSingleton,
    assign: (shards, epochs) =>
      epochs === undefined
        ? heartbeatOnce
        : Effect.suspend(() => {
          for (const shard of shards) {
            const epoch = epochs.get(shard.value)
            if (epoch !== undefined && shard.value >= 1 && shard.value <= numberOfShards) takeShard(shard.value, epoch)
          }
          return syncSingletons()
        }),
    unassign: (shards, epochs) =>
      Effect.suspend(() => {
        const stopped: Array<number> = []
        for (const shard of shards) {
          const value = shard.value
          if (value < 1 || value > numberOfShards) continue
          const epoch = epochs?.get(value) ?? heldEpoch[value]!
          if (epoch > releasedEpoch[value]!) releasedEpoch[value] = epoch
          if (heldEpoch[value]! !== 0 && heldEpoch[value]! <= epoch) {
            heldEpoch[value] = 0
            stopped.push(value)
          }
          const route = routing[value]
          if (route?.podKey === selfKey) routing[value] = { pod: undefined, podKey: "", epoch: route.epoch }
        }
        // Confirm only once the entities have stopped.
        return Effect.zipRight(stopEntitiesOfShards(stopped), syncSingletons())
      }),
    sendMessageToLocalEntityManagerWithoutRetries,
    getPods: Effect.sync(() => HashSet.fromIterable(getPodsSync())),
    getAssignedShardIds: Effect.sync(() => {
      const held: Array<number> = []
      for (let shard = 1; shard <= numberOfShards; shard++) if (heldEpoch[shard]! !== 0) held.push(shard)
      return toShardIds(held)
    }),
    refreshAssignments,
    getShardId: (entityIdOrAddress) =>
      new ShardId({
        value: shardIdOf(
          typeof entityIdOrAddress === "string" ? entityIdOrAddress : entityIdOrAddress.entityId,
          numberOfShards
        )
      }),
    heartbeat: heartbeatOnce,
    localEntityCount: Effect.sync(() => counter.count)
  }
  direct.registerReceiver(sharding, receiveNow)
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
