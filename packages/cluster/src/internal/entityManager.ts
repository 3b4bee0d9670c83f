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

interface Stopping {
  done: boolean
  // Created only when someone waits for a stop already under way.
  deferred: Deferred.Deferred<void> | undefined
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
  scope: Scope.CloseableScope | undefined
  lastActive: number
  // The mailbox: one message is processed at a time per entity; the rest wait here in FIFO order.
  busy: boolean
  waiters: Array<Waiter> | undefined
  // Set when the instance starts stopping; completed once it has stopped (finalizers ran or timed out).
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
  readonly nowMillis: () => number
  readonly fork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
}

/**
 * The instances of one recipient type on one pod: spawns them on their first message, serialises their
 * messages, deduplicates retries by primary key, and stops them (passivation, shard handoff, shutdown).
 */
export class EntityManager {
  readonly entities = new Map<string, EntityState>()
  private readonly byShard = new Map<number, Set<EntityState>>()

  constructor(readonly options: EntityManagerOptions) {}

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
      return Effect.fail(new EntityNotManagedByThisPodException({ recipientAddress: this.addressOf(state) }))
    }
    const entity = state
    if (!entity.busy) {
      // Fast path: the mailbox is free; take it synchronously (no suspension point before `ensuring`).
      if (entity.offer === undefined) return failedToStart
      if (messageId !== undefined) {
        const known = this.knownReply(entity, messageId)
        if (known !== undefined) return Exit.succeed(known)
      }
      entity.busy = true
      let offered: Effect.Effect<Reply, ShardingException>
      try {
        offered = entity.offer(message) as Effect.Effect<Reply, ShardingException>
      } catch (defect) {
        this.release(entity)
        return offerDefect(defect)
      }
      if (isExit(offered)) {
        // The behaviour answered synchronously (e.g. a handler returning `Effect.succeed`): nothing ran in
        // between, so the mailbox is released at once and the caller gets the reply as a value (no fiber
        // operation on this path).
        this.release(entity)
        if (Exit.isSuccess(offered)) this.processed(entity, messageId, offered.value)
        return offered
      }
      // Record the reply and release the mailbox in one continuation, whatever the outcome (interruption
      // included: the continuation runs in an uninterruptible region).
      return Effect.uninterruptibleMask((restore) =>
        Effect.matchCauseEffect(restore(offered), {
          onFailure: (cause) => {
            this.release(entity)
            return Effect.failCause(cause)
          },
          onSuccess: (reply) => {
            const recorded = this.processed(entity, messageId, reply)
            this.release(entity)
            return Exit.succeed(recorded)
          }
        })
      )
    }
    return Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(this.acquire(entity)),
        restore(this.process(entity, message, messageId)).pipe(Effect.ensuring(Effect.sync(() => this.release(entity))))
      )
    )
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

  // The queued path: runs once this message holds the mailbox (so the deduplication check sees the replies
  // of every message ahead of it).
  private process(entity: EntityState, message: unknown, messageId: string | undefined): Effect.Effect<Reply, ShardingException> {
    return Effect.suspend(() => {
      if (entity.offer === undefined) return failedToStart
      if (messageId !== undefined) {
        const known = this.knownReply(entity, messageId)
        if (known !== undefined) return Exit.succeed(known)
      }
      let offered: Effect.Effect<Reply, ShardingException>
      try {
        offered = entity.offer!(message) as Effect.Effect<Reply, ShardingException>
      } catch (defect) {
        return offerDefect(defect)
      }
      return Effect.map(offered, (reply) => this.processed(entity, messageId, reply))
    })
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
          forkShutdown: Effect.sync(() => void this.options.fork(this.stop(entity))),
          terminationTimeout: this.options.terminationTimeout
        })
      )
      const exit = yield* Effect.exit(Effect.provide(this.options.behaviour, context) as Effect.Effect<Offer<unknown>>)
      if (Exit.isSuccess(exit)) {
        entity.offer = exit.value
      } else {
        yield* Effect.logError("entity failed to start", Cause.pretty(exit.cause)).pipe(
          Effect.annotateLogs({ entity: this.addressOf(entity).toString() })
        )
        this.options.fork(this.stop(entity))
      }
    })
    // Starting runs in the caller's fiber, ahead of its own message (it holds the mailbox).
    this.options.fork(Effect.ensuring(start, Effect.sync(() => this.release(entity))))
    return entity
  }

  /** Called by the shared wheel for entities whose bucket came due. */
  onWheel(entity: EntityState, now: number): void {
    if (entity.stopped !== undefined) return
    const deadline = entity.lastActive + this.options.maxIdleMillis
    if (deadline <= now && !entity.busy) {
      this.options.fork(this.stop(entity))
    } else {
      this.options.wheel.schedule(entity, Math.max(deadline, now + 1))
    }
  }

  /**
   * Stops one instance: refuse new messages, fail those waiting in its mailbox (not delivered, so their
   * senders retry), wait for the message being processed, then close its scope (finalizers). Bounded by
   * `entityTerminationTimeout`.
   */
  stop(entity: EntityState): Effect.Effect<void> {
    return this.stopMany([entity])
  }

  /**
   * Stops instances concurrently, all within one `entityTerminationTimeout` (they all start now). An
   * idle instance whose behaviour needs no finalizer stops synchronously; an instance already stopping is
   * waited for. Returns once every one has stopped (or the timeout passed).
   */
  stopMany(entities: Iterable<EntityState>): Effect.Effect<void> {
    let work: Array<Effect.Effect<void>> | undefined
    for (const entity of entities) {
      const stopping = this.beginStop(entity)
      if (stopping !== undefined) (work ??= []).push(stopping)
    }
    if (work === undefined) return Effect.void
    const all = work.length === 1 ? work[0]! : this.runAll(work)
    return all.pipe(
      Effect.timeout(this.options.terminationTimeout),
      Effect.catchAll(() =>
        Effect.logWarning("entities did not stop within entityTerminationTimeout").pipe(
          Effect.annotateLogs({ entityType: this.options.recipientType.name, stopping: work!.length })
        )
      )
    )
  }

  // Runs the effects concurrently, each in its own fiber, and waits for all of them; interrupting the wait
  // interrupts them. (Effect.all with unbounded concurrency costs ~60-100 us per effect with tens of
  // thousands of them; this costs a few.)
  private runAll(effects: ReadonlyArray<Effect.Effect<void>>): Effect.Effect<void> {
    return Effect.suspend(() => {
      const done = Deferred.unsafeMake<void>(FiberId.none)
      let remaining = effects.length
      const countDown = Effect.sync(() => {
        if (--remaining === 0) Deferred.unsafeDone(done, Exit.void)
      })
      const fibers = effects.map((effect) => this.options.fork(Effect.ensuring(effect, countDown)))
      return Effect.onInterrupt(Deferred.await(done), () => Fiber.interruptAll(fibers))
    })
  }

  // Starts stopping an instance; undefined when it stopped synchronously, else what remains to wait for.
  private beginStop(entity: EntityState): Effect.Effect<void> | undefined {
    if (entity.stopped !== undefined) {
      const stopping = entity.stopped
      return stopping.done ? undefined : Deferred.await(stopping.deferred ??= Deferred.unsafeMake<void>(FiberId.none))
    }
    const stopped: Stopping = { done: false, deferred: undefined }
    entity.stopped = stopped
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
      stopped.done = true
      if (stopped.deferred !== undefined) Deferred.unsafeDone(stopped.deferred, Exit.void)
    }
    if (!entity.busy) {
      // Idle: take the mailbox for good, synchronously.
      entity.busy = true
      const scope = entity.scope
      if (scope === undefined) {
        finish()
        return undefined
      }
      return Effect.ensuring(Scope.close(scope, Exit.void), Effect.sync(finish))
    }
    // Busy: wait for the message being processed (or the start-up), then close the scope.
    return Effect.ensuring(
      Effect.zipRight(
        Effect.ignore(this.acquire(entity)),
        Effect.suspend(() => entity.scope === undefined ? Effect.void : Scope.close(entity.scope, Exit.void))
      ),
      Effect.sync(finish)
    )
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
