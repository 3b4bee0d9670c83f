import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scope from "effect/Scope"
import * as MessageState from "../MessageState.js"
import type { PodAddress } from "../PodAddress.js"
import { RecipientAddress } from "../RecipientAddress.js"
import type { Offer, RecipientBehaviour } from "../RecipientBehaviour.js"
import { RecipientBehaviourContext } from "../RecipientBehaviourContext.js"
import type { RecipientType } from "../RecipientType.js"
import { ShardId } from "../ShardId.js"
import type { ShardingException } from "../ShardingException.js"
import {
  EntityCapacityExceededException,
  EntityNotManagedByThisPodException,
  ExceptionWhileOfferingMessageException,
  MailboxFullException
} from "../ShardingException.js"
import { isExit } from "./exit.js"
import { hooksOf, type InstanceHooks } from "./instanceHooks.js"
import type { TimerWheel } from "./timerWheel.js"

type Reply = MessageState.MessageState<Exit.Exit<unknown, unknown>>

// A remembered failed exit (successes are remembered as their bare value).
class StoredFailure {
  constructor(readonly exit: Exit.Exit<unknown, unknown>) {}
}

// The behaviour failed to start: the instance is being stopped.
const failedToStart = Exit.fail(new ExceptionWhileOfferingMessageException({ error: "the entity failed to start" }))

// An offer function that throws (instead of returning an effect) is a failure of that message.
const offerDefect = (defect: unknown) =>
  Exit.fail(new ExceptionWhileOfferingMessageException({ error: Cause.pretty(Cause.die(defect)) }))

// A pod fiber running a handler was interrupted (the pod is shutting down): the handler may have run.
const handlerInterrupted = new ExceptionWhileOfferingMessageException({
  error: "interrupted: the pod stopped while the message was being handled"
})

interface Stopping {
  done: boolean
  // Called once the instance has stopped (waits of hand-offs, shutdowns, passivations).
  callbacks: Array<() => void> | undefined
}

interface Waiter {
  resume: (effect: Effect.Effect<void, MailboxFullException | EntityNotManagedByThisPodException>) => void
  granted: boolean
}

/**
 * One live entity (or topic) instance. Kept small: an idle `fromFunctionEffect` entity is this object, its
 * address, its scope and the offer closure; no fiber (passivation is the shared timer wheel).
 */
export interface EntityState {
  readonly manager: EntityManager
  readonly entityId: string
  readonly shardId: number
  address: RecipientAddress | undefined
  offer: Offer<unknown> | undefined
  // Set when the behaviour has its own mailbox (fromInMemoryQueue).
  hooks: InstanceHooks | undefined
  scope: Scope.CloseableScope | undefined
  lastActive: number
  // The mailbox: one message is processed at a time per entity; the rest wait here in FIFO order.
  busy: boolean
  waiters: Array<Waiter> | undefined
  // Set when the instance starts stopping; `done` once it has stopped (its scope closed).
  stopped: Stopping | undefined
  // Replies by primary key, in insertion order (oldest first): a retried message gets its stored reply.
  // The first one is kept inline ({ key, reply }); a Map only from the second.
  // Each reply is stored as its exit's success value, or as a StoredFailure: a retried message gets an
  // equal reply, and a remembered success costs no more than its value (no Exit or MessageState object).
  replies: Map<string, unknown> | { readonly key: string; readonly stored: unknown } | undefined
}

export interface EntityManagerOptions {
  readonly recipientType: RecipientType<unknown>
  readonly behaviour: RecipientBehaviour<unknown, any>
  readonly context: Context.Context<never>
  readonly maxIdleMillis: number
  readonly terminationTimeout: Duration.Duration
  readonly mailboxCapacity: number
  readonly deduplicationCapacity: number
  readonly maxEntities: number
  readonly podAddress: PodAddress
  readonly counter: { count: number }
  readonly wheel: TimerWheel<EntityState>
  /** Monotonic milliseconds from the Clock service (idleness, stop deadlines). */
  readonly nowMillis: () => number
  /** Whether the pod serves this shard now (checked where an instance is spawned and a message takes the mailbox). */
  readonly canServe: (shardId: number) => boolean
  /** The epoch at which the pod holds a shard now (0: none; topics: 0), given to an instance as it starts. */
  readonly epochOf: (shardId: number) => number
  /** Runs an effect in a fiber the pod owns. */
  readonly fork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
}

/**
 * The instances of one recipient type on one pod: spawns them on their first message, serialises their
 * messages, deduplicates retries by primary key, and stops them (passivation, shard handoff, shutdown).
 *
 * A handler that does not answer synchronously runs in a fiber the pod owns, holding the mailbox until it
 * is done; its sender only awaits the reply. A sender that gives up (its own timeout, a dropped connection)
 * abandons the wait, not the message, and a retry with the same primary key gets the stored reply.
 */
export class EntityManager {
  readonly entities = new Map<string, EntityState>()
  private readonly byShard = new Map<number, Set<EntityState>>()
  private readonly terminationMillis: number

  constructor(readonly options: EntityManagerOptions) {
    this.terminationMillis = Duration.toMillis(options.terminationTimeout)
  }

  get isTopic(): boolean {
    return this.options.recipientType._tag === "TopicType"
  }

  /** Delivers a message to the instance `entityId`, starting it if needed. The caller checked ownership. */
  deliver(
    entityId: string,
    shardId: number,
    message: unknown,
    messageId: string | undefined
  ): Effect.Effect<Reply, ShardingException> {
    let state = this.entities.get(entityId)
    if (state === undefined) {
      // Ownership is checked again here: the caller's check may predate a suspension (an asynchronous decode).
      if (!this.options.canServe(shardId)) return this.notManaged(entityId)
      if (this.options.counter.count >= this.options.maxEntities) {
        return Effect.fail(
          new EntityCapacityExceededException({
            recipientAddress: new RecipientAddress({
              recipientTypeName: this.options.recipientType.name,
              entityId
            }),
            podAddress: this.options.podAddress,
            capacity: this.options.maxEntities
          })
        )
      }
      state = this.spawn(entityId, shardId)
    } else if (state.stopped !== undefined) {
      return this.notManaged(entityId)
    }
    const entity = state
    if (!entity.busy) {
      // Fast path: the mailbox is free; take it synchronously.
      entity.busy = true
      // The caller checked ownership in this same synchronous step: no second check on the hot path.
      return this.turn(entity, message, messageId, false)
    }
    // Wait for the mailbox in the sender's fiber (an interrupted sender leaves the queue); the turn itself
    // starts in the uninterruptible continuation, so a granted turn is never lost.
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.acquire(entity)), () => {
        const turn = this.turn(entity, message, messageId, true)
        return isExit(turn) ? turn : restore(turn)
      })
    )
  }

  private notManaged(entityId: string): Exit.Exit<never, EntityNotManagedByThisPodException> {
    return Exit.fail(
      new EntityNotManagedByThisPodException({
        recipientAddress: new RecipientAddress({ recipientTypeName: this.options.recipientType.name, entityId })
      })
    )
  }

  // One message's turn, with the mailbox held: it is released here, at once when the behaviour answers
  // synchronously (nothing ran in between, so the caller gets the reply as a value, with no fiber
  // operation), or when the handler's fiber ends.
  private turn(
    entity: EntityState,
    message: unknown,
    messageId: string | undefined,
    recheckOwnership: boolean
  ): Effect.Effect<Reply, ShardingException> {
    if (entity.offer === undefined) {
      this.release(entity)
      return failedToStart
    }
    if (entity.stopped !== undefined) {
      this.release(entity)
      return this.notManaged(entity.entityId)
    }
    // A queued message got the mailbox after waiting: the shard may have left meanwhile.
    if (recheckOwnership && !this.isTopic && !this.options.canServe(entity.shardId)) {
      this.release(entity)
      return this.notManaged(entity.entityId)
    }
    if (messageId !== undefined) {
      const known = this.knownReply(entity, messageId)
      if (known !== undefined) {
        this.release(entity)
        return Exit.succeed(known)
      }
    }
    if (entity.hooks !== undefined && !entity.hooks.alive()) {
      // The instance cannot process any more: stop it, so that the sender's retry reaches a fresh one.
      this.release(entity)
      this.beginStop(entity, this.deadline())
      return this.notManaged(entity.entityId)
    }
    let offered: Effect.Effect<Reply, ShardingException>
    try {
      offered = entity.offer(message) as Effect.Effect<Reply, ShardingException>
    } catch (defect) {
      this.release(entity)
      return offerDefect(defect)
    }
    if (isExit(offered)) {
      this.release(entity)
      if (Exit.isSuccess(offered)) this.processed(entity, messageId, offered.value)
      return offered
    }
    return this.detached(entity, offered, messageId)
  }

  // Runs a handler in a fiber the pod owns; the sender awaits its reply (and may stop waiting).
  private detached(
    entity: EntityState,
    offered: Effect.Effect<Reply, ShardingException>,
    messageId: string | undefined
  ): Effect.Effect<Reply, ShardingException> {
    const done = Deferred.unsafeMake<Reply, ShardingException>(FiberId.none)
    this.options.fork(Effect.ignore(Effect.onExit(offered, (exit) =>
      Effect.sync(() => {
        const outcome: Exit.Exit<Reply, ShardingException> = Exit.isSuccess(exit)
          ? Exit.succeed(this.processed(entity, messageId, exit.value))
          : Cause.isInterruptedOnly(exit.cause)
          ? Exit.fail(handlerInterrupted)
          : exit
        this.release(entity)
        Deferred.unsafeDone(done, outcome)
      })
    )))
    return Deferred.await(done)
  }

  /** The stored reply of a message already processed by this instance (deduplication by primary key). */
  private knownReply(entity: EntityState, messageId: string): Reply | undefined {
    const replies = entity.replies
    if (replies === undefined) return undefined
    let stored: unknown
    if (replies instanceof Map) {
      stored = replies.get(messageId)
      if (stored === undefined && !replies.has(messageId)) return undefined
    } else {
      if (replies.key !== messageId) return undefined
      stored = replies.stored
    }
    return MessageState.Processed(stored instanceof StoredFailure ? stored.exit : Exit.succeed(stored))
  }

  /** Records a processed reply (the deduplication cache) and the activity time; returns the reply. */
  private processed(entity: EntityState, messageId: string | undefined, reply: Reply): Reply {
    entity.lastActive = this.options.nowMillis()
    if (messageId !== undefined && MessageState.isProcessed(reply)) {
      const exit = reply.result
      const stored = Exit.isSuccess(exit) ? exit.value : new StoredFailure(exit)
      const replies = entity.replies
      const capacity = this.options.deduplicationCapacity
      if (replies === undefined) {
        // The first reply is stored inline: an instance that got one message costs no Map.
        if (capacity > 0) entity.replies = { key: messageId, stored }
      } else if (replies instanceof Map) {
        replies.set(messageId, stored)
        if (replies.size > capacity) replies.delete(replies.keys().next().value!)
      } else if (replies.key === messageId || capacity === 1) {
        entity.replies = { key: messageId, stored }
      } else {
        entity.replies = new Map([[replies.key, replies.stored], [messageId, stored]])
      }
    }
    return reply
  }

  private acquire(entity: EntityState): Effect.Effect<void, MailboxFullException | EntityNotManagedByThisPodException> {
    if (!entity.busy) {
      entity.busy = true
      return Effect.void
    }
    const waiters = entity.waiters ??= []
    if (waiters.length >= this.options.mailboxCapacity) {
      return Effect.fail(
        new MailboxFullException({ recipientAddress: this.addressOf(entity), capacity: this.options.mailboxCapacity })
      )
    }
    return Effect.async<void, MailboxFullException | EntityNotManagedByThisPodException>((resume) => {
      const waiter: Waiter = { resume, granted: false }
      waiters.push(waiter)
      return Effect.sync(() => {
        // Interrupted while waiting: leave the queue, or pass on a turn granted at the same moment.
        if (waiter.granted) this.release(entity)
        else {
          const i = waiters.indexOf(waiter)
          if (i >= 0) waiters.splice(i, 1)
        }
      })
    })
  }

  private release(entity: EntityState): void {
    const next = entity.waiters?.shift()
    if (next !== undefined) {
      next.granted = true
      next.resume(Effect.void)
    } else {
      entity.busy = false
    }
  }

  addressOf(entity: EntityState): RecipientAddress {
    return entity.address ??= new RecipientAddress({
      recipientTypeName: this.options.recipientType.name,
      entityId: entity.entityId
    })
  }

  private spawn(entityId: string, shardId: number): EntityState {
    const entity: EntityState = {
      manager: this,
      entityId,
      shardId,
      address: undefined,
      offer: undefined,
      hooks: undefined,
      scope: undefined,
      lastActive: this.options.nowMillis(),
      busy: true, // held by the start-up below, so messages queue behind it
      waiters: undefined,
      stopped: undefined,
      replies: undefined
    }
    this.entities.set(entityId, entity)
    let set = this.byShard.get(shardId)
    if (set === undefined) {
      set = new Set()
      this.byShard.set(shardId, set)
    }
    set.add(entity)
    this.options.counter.count++
    this.options.wheel.schedule(entity, entity.lastActive + this.options.maxIdleMillis)
    // Read at spawn, right after `canServe`: the tenure the instance belongs to.
    const epoch = this.options.epochOf(shardId)
    const start = Effect.gen(this, function*() {
      const scope = yield* Scope.make()
      entity.scope = scope
      const context = Context.add(
        Context.add(this.options.context, Scope.Scope, scope),
        RecipientBehaviourContext,
        RecipientBehaviourContext.of({
          recipientAddress: this.addressOf(entity),
          shardId: new ShardId({ value: shardId }),
          recipientType: this.options.recipientType,
          forkShutdown: Effect.sync(() => void this.beginStop(entity, this.deadline())),
          terminationTimeout: this.options.terminationTimeout,
          mailboxCapacity: this.options.mailboxCapacity,
          deduplicationCapacity: this.options.deduplicationCapacity,
          epoch
        })
      )
      const exit = yield* Effect.exit(Effect.provide(this.options.behaviour, context) as Effect.Effect<Offer<unknown>>)
      if (Exit.isSuccess(exit)) {
        entity.offer = exit.value
        entity.hooks = hooksOf(exit.value)
      } else {
        yield* Effect.logError("entity failed to start", Cause.pretty(exit.cause)).pipe(
          Effect.annotateLogs({ entity: this.addressOf(entity).toString() })
        )
        this.beginStop(entity, this.deadline())
      }
      // A stop that gave up waiting for this start-up (it overran the deadline) left the scope to close here.
      if (entity.stopped?.done === true) yield* Scope.close(scope, Exit.void)
    })
    // Starting runs in a pod fiber, ahead of the first message (it holds the mailbox).
    this.options.fork(Effect.ensuring(start, Effect.sync(() => this.release(entity))))
    return entity
  }

  /** Called by the shared wheel for entities whose bucket came due. */
  onWheel(entity: EntityState, now: number): void {
    if (entity.stopped !== undefined) return
    if (entity.busy || (entity.hooks !== undefined && !entity.hooks.idle())) {
      // Work accepted and not finished (a running message, a mailbox backlog) is activity.
      entity.lastActive = now
    }
    const deadline = entity.lastActive + this.options.maxIdleMillis
    if (deadline <= now) {
      this.beginStop(entity, now + this.terminationMillis)
    } else {
      this.options.wheel.schedule(entity, deadline)
    }
  }

  private deadline(): number {
    return this.options.nowMillis() + this.terminationMillis
  }

  /**
   * Stops instances concurrently, all within one `entityTerminationTimeout` from now; an instance already
   * stopping is waited for. Returns once every one has stopped: its scope closed, its finalizers run. The
   * stops run in fibers the pod owns: interrupting this wait abandons the wait, never a stop.
   */
  stopMany(entities: Iterable<EntityState>): Effect.Effect<void> {
    const deadline = this.deadline()
    let pending: Array<Stopping> | undefined
    for (const entity of entities) {
      const stopping = this.beginStop(entity, deadline)
      if (!stopping.done) (pending ??= []).push(stopping)
    }
    if (pending === undefined) return Effect.void
    const all = pending
    return Effect.async<void>((resume) => {
      let remaining = all.length
      const countDown = () => {
        if (--remaining === 0) resume(Effect.void)
      }
      for (const stopping of all) {
        if (stopping.done) countDown()
        else (stopping.callbacks ??= []).push(countDown)
      }
    })
  }

  /**
   * Starts stopping an instance (synchronously: it takes no new message from now on) and returns its
   * progress. The stop refuses new messages, fails those waiting in the mailbox (not delivered: their
   * senders retry), lets a mailbox behaviour finish its accepted messages and waits for the message being
   * handled, both until `deadline`, then closes the scope: finalizers run to their end (an overrunning one
   * delays the confirmation, it is never cut short) and fibers forked in the scope are interrupted. A
   * handler still running at the deadline is not interrupted (its sender awaits its reply); it is logged.
   */
  private beginStop(entity: EntityState, deadline: number): Stopping {
    if (entity.stopped !== undefined) return entity.stopped
    const stopping: Stopping = { done: false, callbacks: undefined }
    entity.stopped = stopping
    const waiters = entity.waiters
    entity.waiters = undefined
    if (waiters !== undefined) {
      const error = new EntityNotManagedByThisPodException({ recipientAddress: this.addressOf(entity) })
      for (const waiter of waiters) waiter.resume(Effect.fail(error))
    }
    const finish = () => {
      if (this.entities.get(entity.entityId) === entity) {
        this.entities.delete(entity.entityId)
        this.options.counter.count--
      }
      this.byShard.get(entity.shardId)?.delete(entity)
      stopping.done = true
      const callbacks = stopping.callbacks
      stopping.callbacks = undefined
      if (callbacks !== undefined) for (const callback of callbacks) callback()
    }
    const hooks = entity.hooks
    const busy = entity.busy
    // Idle: take the mailbox for good, synchronously.
    if (!busy) entity.busy = true
    if (!busy && hooks === undefined && entity.scope === undefined) {
      finish()
      return stopping
    }
    const untilDeadline = <E>(effect: Effect.Effect<void, E>, what: string): Effect.Effect<void> =>
      Effect.suspend(() => effect.pipe(Effect.timeout(Duration.millis(Math.max(0, deadline - this.options.nowMillis())))))
        .pipe(
          Effect.catchAll((error) =>
            Cause.isTimeoutException(error)
              ? Effect.logWarning(`${what} past entityTerminationTimeout; stopping the instance anyway`).pipe(
                Effect.annotateLogs({ entity: this.addressOf(entity).toString() })
              )
              : Effect.void
          )
        )
    const turn = busy
      ? untilDeadline(this.acquire(entity), "a message is still being handled")
      : Effect.void
    const drain = hooks === undefined ? Effect.void : untilDeadline(hooks.drain, "the mailbox is still being worked through")
    this.options.fork(
      Effect.zip(turn, drain, { concurrent: true }).pipe(
        Effect.zipRight(Effect.suspend(() => entity.scope === undefined ? Effect.void : Scope.close(entity.scope, Exit.void))),
        Effect.ensuring(Effect.sync(finish))
      )
    )
    return stopping
  }

  stopShard(shardId: number): Effect.Effect<void> {
    const set = this.byShard.get(shardId)
    if (set === undefined || set.size === 0) return Effect.void
    return this.stopMany(Array.from(set))
  }

  stopAll(): Effect.Effect<void> {
    return this.stopMany(Array.from(this.entities.values()))
  }
}
