/**
 * Behaviours: how an entity (or topic) instance handles its messages.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import type * as Message from "./Message.js"
import { isExit } from "./internal/exit.js"
import { withHooks } from "./internal/instanceHooks.js"
import { primaryKeyOf } from "./internal/primaryKey.js"
import * as MessageState from "./MessageState.js"
import { PoisonPill } from "./PoisonPill.js"
import { RecipientBehaviourContext } from "./RecipientBehaviourContext.js"
import {
  ExceptionWhileOfferingMessageException,
  MailboxFullException,
  NoResultInProcessedMessageStateException
} from "./ShardingException.js"

/**
 * The function an instance exposes: offer it a message, get its state (processed with the message's
 * `Exit`, or acknowledged when the result comes later).
 *
 * @since 0.1.0
 * @category models
 */
export type Offer<Msg> = <A extends Msg>(
  message: A
) => Effect.Effect<
  MessageState.MessageState<Message.Message.Exit<A>>,
  ExceptionWhileOfferingMessageException | NoResultInProcessedMessageStateException | MailboxFullException
>

/**
 * A behaviour: an effect run when an instance starts, producing its offer function. It runs in the
 * instance's `Scope` (closed when the instance stops: passivation, shard handoff, shutdown) with its
 * `RecipientBehaviourContext`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecipientBehaviour<Msg, R = never>
  extends Effect.Effect<Offer<Msg>, never, R | RecipientBehaviourContext | Scope.Scope>
{}

/**
 * Options of an entity type's registration.
 *
 * - `entityMaxIdleTime`: overrides `ShardingConfig.entityMaxIdleTime` for this type.
 *
 * @since 0.1.0
 * @category models
 */
export type EntityBehaviourOptions = {
  readonly entityMaxIdleTime?: Option.Option<Duration.Duration> | undefined
}

// A handler's defect becomes a typed error for the caller; the instance keeps running.
const onDefect = (defect: unknown) =>
  Exit.fail(new ExceptionWhileOfferingMessageException({ error: Cause.pretty(Cause.die(defect)) }))

// Runs a handler's effect in the instance's context. A handler that answered synchronously (its effect is
// already a successful `Exit`, as `Effect.succeed` is) needs neither the context nor the defect guard: the
// value is returned as is, and the entity manager completes the message without a fiber operation.
const runHandler = <A, R>(
  call: () => Effect.Effect<A, never, R>,
  context: Context.Context<R>
): Effect.Effect<A, ExceptionWhileOfferingMessageException> => {
  let effect: Effect.Effect<A, never, R>
  try {
    effect = call()
  } catch (defect) {
    return onDefect(defect)
  }
  if (isExit(effect) && Exit.isSuccess(effect)) return effect
  const handled = effect as Effect.Effect<A>
  // The context switch, its restoration and the defect guard in one continuation: what
  // `Effect.catchAllDefect(Effect.locally(effect, currentContext, context), onDefect)` does, with fewer
  // fiber operations. The switch happens inside the uninterruptible region, so the caller's context is
  // restored whatever happens.
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(FiberRef.getAndSet(FiberRef.currentContext, context as Context.Context<never>), (previous) =>
      Effect.matchCauseEffect(restore(handled), {
        onFailure: (cause) => {
          const defect = Cause.dieOption(cause)
          return Effect.zipRight(
            FiberRef.set(FiberRef.currentContext, previous),
            defect._tag === "Some" ? onDefect(defect.value) : Effect.failCause(cause)
          )
        },
        onSuccess: (value) => Effect.as(FiberRef.set(FiberRef.currentContext, previous), value)
      }))
  )
}

/**
 * A stateless behaviour: each message is handled by `handler`, one at a time per entity, and its state is
 * the reply. As in 2024, `Msg` must be a message (`Message.Message.Any`: a serializable request with a
 * primary key), so the reply's `Exit` type is known.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromFunctionEffect = <Msg extends Message.Message.Any, R>(
  handler: (entityId: string, message: Msg) => Effect.Effect<MessageState.MessageState<Message.Message.Exit<Msg>>, never, R>
): RecipientBehaviour<Msg, R> =>
  Effect.map(
    Effect.context<R | RecipientBehaviourContext>(),
    (context) => {
      const self = Context.get(context as Context.Context<RecipientBehaviourContext>, RecipientBehaviourContext)
      const entityId = self.recipientAddress.entityId
      return ((message: Msg) => runHandler(() => handler(entityId, message), context)) as any
    }
  ) as RecipientBehaviour<Msg, R>

/**
 * A behaviour with in-memory state: `initialState` runs when the instance starts; each message is handled
 * with the state's `Ref`, one at a time per entity. The state is lost when the instance stops.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromFunctionEffectStateful = <S, Msg, R, R2>(
  initialState: (entityId: string) => Effect.Effect<S, never, R>,
  handler: (
    entityId: string,
    message: Msg,
    state: Ref.Ref<S>
  ) => Effect.Effect<MessageState.MessageState<Message.Message.Exit<Msg>>, never, R2>
): RecipientBehaviour<Msg, R | R2> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<R2 | RecipientBehaviourContext>()
    const self = Context.get(context as Context.Context<RecipientBehaviourContext>, RecipientBehaviourContext)
    const entityId = self.recipientAddress.entityId
    const state = yield* Ref.make(yield* initialState(entityId))
    return ((message: Msg) => runHandler(() => handler(entityId, message, state), context)) as any
  }) as RecipientBehaviour<Msg, R | R2>

/**
 * A mailbox actor: `handler` runs in its own fiber for the instance's lifetime, taking messages from
 * `dequeue` and reporting each outcome with `processed(message, Option.some(exit))` (or `Option.none()` for
 * "processed, no result": `send` then fails with `NoResultInProcessedMessageStateException`). Offering
 * answers `Acknowledged` until the result is reported, then `Processed(exit)`; a message offered again with
 * the same primary key is not enqueued twice (the last `entityDeduplicationCapacity` keys, plus those still
 * waiting, are remembered). At most `entityMailboxCapacity` messages wait in the queue; beyond that offering
 * fails with `MailboxFullException`.
 *
 * Accepted messages waiting in the queue count as activity: the instance is passivated only
 * `entityMaxIdleTime` after its queue emptied (a handler that spends longer than that on one message is
 * given `entityTerminationTimeout` to finish it). When the instance stops, the handler receives a `PoisonPill` behind the messages already
 * accepted, and the stop waits for it to return until `entityTerminationTimeout` has passed since the stop
 * began; then the handler is interrupted. A handler that ends on its own (a defect, or returning before a
 * `PoisonPill`) stops the instance, so the next message reaches a fresh one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromInMemoryQueue = <Msg, R>(
  handler: (
    entityId: string,
    dequeue: Queue.Dequeue<Msg | PoisonPill>,
    processed: <A extends Msg>(message: A, value: Option.Option<Message.Message.Exit<A>>) => Effect.Effect<void>
  ) => Effect.Effect<void, never, R>
): RecipientBehaviour<Msg, R> =>
  Effect.gen(function*() {
    const self = yield* RecipientBehaviourContext
    const entityId = self.recipientAddress.entityId
    const capacity = self.mailboxCapacity ?? Number.POSITIVE_INFINITY
    // Replies by primary key, oldest first (the 2024 dedupe, storing the Exit itself). Entries for messages
    // still waiting must outlive eviction, so the bound leaves room for a full queue.
    const states = new Map<string, MessageState.MessageState<Exit.Exit<unknown, unknown>> | "no-result">()
    const remembered = (self.deduplicationCapacity ?? 1000) + (Number.isFinite(capacity) ? capacity : 0)
    const remember = (key: string, state: MessageState.MessageState<Exit.Exit<unknown, unknown>> | "no-result") => {
      states.delete(key)
      states.set(key, state)
      if (states.size > remembered) states.delete(states.keys().next().value!)
    }
    const queue = yield* Queue.unbounded<Msg | PoisonPill>()
    const processed = <A extends Msg>(message: A, value: Option.Option<Message.Message.Exit<A>>) =>
      Effect.sync(() => {
        const key = primaryKeyOf(message)
        if (key !== undefined) remember(key, Option.isSome(value) ? MessageState.Processed(value.value as any) : "no-result")
      })
    let draining = false
    let alive = true
    const fiber = yield* Effect.forkScoped(handler(entityId, queue, processed))
    fiber.addObserver(() => {
      alive = false
    })
    // A handler that ends before it was asked to cannot process what is queued: stop the instance.
    yield* Effect.forkScoped(Effect.flatMap(Fiber.await(fiber), (exit) =>
      draining ? Effect.void : Effect.logError("mailbox handler ended; stopping the instance", Cause.pretty(exit._tag === "Failure" ? exit.cause : Cause.empty)).pipe(
        Effect.zipRight(self.forkShutdown),
        Effect.annotateLogs({ entity: self.recipientAddress.toString() })
      )))
    const offer = (message: Msg) => {
      const key = primaryKeyOf(message)
      if (key !== undefined) {
        const known = states.get(key)
        if (known === "no-result") return noResult
        if (known !== undefined) return Exit.succeed(known)
      }
      const size = queue.unsafeSize()
      if (size._tag === "Some" && size.value >= capacity) {
        return Exit.fail(new MailboxFullException({ recipientAddress: self.recipientAddress, capacity }))
      }
      if (!queue.unsafeOffer(message)) return mailboxClosed
      if (key !== undefined) remember(key, MessageState.Acknowledged)
      return acknowledged
    }
    return withHooks(offer, {
      // Idle: nothing waits in the queue (the entity manager counts a backlog as activity).
      idle: () => {
        const size = queue.unsafeSize()
        return size._tag === "None" || size.value <= 0
      },
      alive: () => alive,
      drain: Effect.suspend(() => {
        draining = true
        queue.unsafeOffer(new PoisonPill())
        return Effect.asVoid(Fiber.await(fiber))
      })
    }) as any
  }) as RecipientBehaviour<Msg, R>

const acknowledged = Exit.succeed(MessageState.Acknowledged)
const noResult = Exit.fail(new NoResultInProcessedMessageStateException())
const mailboxClosed = Exit.fail(new ExceptionWhileOfferingMessageException({ error: "the mailbox is closed" }))
