/**
 * One live execution: replays its journal into the workflow body, runs new steps, and decides when the
 * execution completes, suspends or stops.
 *
 * The body runs as a fiber. Every step (activity, timer, signal, child, patch marker, compensation) asks
 * this runtime for its outcome (see `replay.ts` for how recorded events are matched). No new step body
 * starts until replay has passed every recorded event and the body has settled (a race's loser is
 * interrupted, not re-run). A coordinator fiber owns every decision; the body reaches it through a
 * control queue. This module is the coordinator; the layers below it are `activities.ts`, `inbox.ts`,
 * `timers.ts` and `replay.ts`.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type { EventRow, ExecutionStatus, JournalWrite, SignalRow } from "../DurableExecutionJournal.js"
import { JournalError } from "../DurableExecutionJournal.js"
import { WorkflowContext } from "../WorkflowContext.js"
import {
  EncodeError,
  NonDeterminismError,
  WorkflowCancelledError,
  WorkflowUsageError
} from "../WorkflowError.js"
import type { ExitCodec } from "./codec.js"
import { dieJson, interruptJson, voidJson } from "./codec.js"
import { Activities } from "./activities.js"
import { BodyScheduler } from "./bodyScheduler.js"
import type { CodeFault, TransientFault } from "./faults.js"
import { isCodeFault, isEngineFault, isTransientFault, stuckOn } from "./faults.js"
import type { Control } from "./controlQueue.js"
import { OneShot } from "./oneShot.js"
import { describeEvent, safeParse } from "./replay.js"

export type { EngineServices, ExecutionParams } from "./replay.js"

/** How an execution run ended. @internal */
export type Outcome =
  | { readonly _tag: "Completed"; readonly status: ExecutionStatus; readonly result: string }
  | { readonly _tag: "Suspended"; readonly wakeAt: number | null; readonly reason: string }
  | { readonly _tag: "Stopped"; readonly error: TransientFault }
  | { readonly _tag: "Stuck"; readonly fault: CodeFault }

/** @internal */
export class ExecutionRuntime extends Activities {
  /** Replay is over and live steps wait for the body to block (`onBodyIdle`). */
  private liveWhenIdle = false

  // ---------------------------------------------------------------------------------------------
  // messages from the engine
  // ---------------------------------------------------------------------------------------------

  /** A signal was stored in the inbox. */
  deliverSignal(name: string, value: string, inboxVersion: number) {
    this.control.unsafeOffer({ _tag: "Signal", name, value, inboxVersion })
  }

  /** The inbox changed (seen by the lease renewal): reload it. */
  notifyInbox() {
    this.control.unsafeOffer({ _tag: "Inbox" })
  }

  /** A cancellation was requested. */
  notifyCancel() {
    this.control.unsafeOffer({ _tag: "Cancel" })
  }

  /**
   * A graceful shutdown: no activity attempt starts any more, and this resolves once no activity body is
   * running and the results of those that were are committed (the execution may go on meanwhile to a
   * suspension or its end, and leave). The caller then stops what still runs. Not bounded here.
   */
  get drain(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.draining = true
      const idle = this.active === 0 ? Effect.void : (this.drained ??= new OneShot<void>()).await
      // then its queued writes: committed by the group committer itself (its retries of a passing journal
      // failure, its hold-back during a shard's lapse on the cluster, never a broken execution's write)
      return Effect.zipRight(idle, this.engine.committer.settled(this))
    })
  }

  /** Whether an activity body (or a child start) is running. */
  get busy(): boolean {
    return this.active > 0
  }

  /** The claim was lost (renewal refused). */
  notifyClaimLost() {
    this.reportFault(this.claimLost())
  }

  onBroken(result: unknown) {
    this.reportFault(result instanceof JournalError ? result : this.claimLost())
  }

  // ---------------------------------------------------------------------------------------------
  // the coordinator
  // ---------------------------------------------------------------------------------------------

  /**
   * Runs the execution until it completes, suspends or stops. If it is interrupted (or dies) instead, the
   * runner must then run `stopBody`.
   */
  get run(): Effect.Effect<Outcome> {
    // On the cluster: the claim was taken while the pod served the execution's shard, but the shard may
    // have left the pod since (before this runtime was live, so the shard's stop did not see it, or while
    // the pod was paused): the body does not start. Asked right before it would, after the journal reads.
    const mayAct = this.engine.journal.mayAct
    const begin = (
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      events: ReadonlyArray<EventRow>,
      signals: ReadonlyArray<SignalRow>
    ): Effect.Effect<Outcome> =>
      mayAct === undefined ? this.begin(fiber, events, signals) : Effect.flatMap(
        mayAct(this.key),
        (may): Effect.Effect<Outcome> =>
          may ? this.begin(fiber, events, signals) : Effect.succeed({ _tag: "Stopped", error: this.claimLost() })
      )
    // A just-created execution has no events and no signals: nothing to read.
    const started: Effect.Effect<Outcome> = this.params.fresh
      ? Effect.withFiberRuntime((fiber) => begin(fiber, [], []))
      : Effect.flatMap(
        Effect.either(Effect.zip(this.engine.journal.events(this.key, 0), this.engine.journal.signals(this.key))),
        (loaded): Effect.Effect<Outcome> =>
          Either.isLeft(loaded)
            ? Effect.succeed({ _tag: "Stopped", error: loaded.left })
            : Effect.withFiberRuntime((fiber) => begin(fiber, loaded.right[0], loaded.right[1]))
      )
    return started
  }

  /** Interrupts the body, unless it has ended (after `run` was interrupted). */
  get stopBody(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const bodyFiber = this.bodyFiber
      this.stopping = true
      return bodyFiber === undefined || bodyFiber.unsafePoll() !== null
        ? Effect.void
        : Effect.asVoid(Fiber.interrupt(bodyFiber))
    })
  }

  /**
   * The body is blocked: the moment to start live steps after replay (a race's loser has been
   * interrupted by then), or to suspend when everything still asked for is a durable wait.
   */
  protected onBodyIdle() {
    if (this.liveWhenIdle) {
      this.liveWhenIdle = false
      this.control.unsafeOffer({ _tag: "ReplayDone" })
    } else if (this.waiting.size > 0 && this.active === 0) {
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
    }
  }

  /** Starts the body (in the coordinator's fiber `fiber`) and handles control messages until an outcome. */
  private begin(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    events: ReadonlyArray<EventRow>,
    signals: ReadonlyArray<SignalRow>
  ): Effect.Effect<Outcome> {
    this.load(events, signals)
    this.clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    this.scheduler = new BodyScheduler(fiber.currentScheduler, () => this.onBodyIdle())

    const context: WorkflowContext = {
      workflow: this.key.workflow,
      executionId: this.key.executionId,
      version: this.params.version,
      scope: [],
      makePersistenceId: (localId) => `${this.key.executionId}__${localId}`,
      runtime: this
    }
    // The body runs in its own fiber with the engine's context, the workflow's and `WorkflowContext`
    // (what `Effect.provide` would give it, set once when it is forked) and this fiber's log annotations.
    const refs = {
      context: Context.add(mergedContext(fiber.currentContext, this.params.context), WorkflowContext, context),
      logAnnotations: fiber.getFiberRef(FiberRef.currentLogAnnotations),
      scheduler: this.scheduler
    }
    const body = this.params.body.pipe(
      // onExit runs even when the body is interrupted (cancellation), so the coordinator always hears of it
      Effect.onExit((exit) => Effect.sync(() => this.control.unsafeOffer({ _tag: "BodyExit", exit }))),
      Effect.ignore
    ) as Effect.Effect<void>
    if (this.history.length === 0) {
      // A fresh execution has nothing to replay: its steps start at once, and so does its body.
      this.liveStarted = true
      this.advance()
      this.bodyFiber = this.engine.fork(body, refs, true)
    } else {
      // Replay: the body starts after the recorded events before its first step were processed (a recorded
      // cancellation interrupts it), as a forked fiber would.
      this.bodyFiber = this.engine.fork(body, refs, false)
      this.advance()
    }
    return this.coordinate()
  }

  /** The coordinator's loop: one control message at a time. */
  private coordinate(): Effect.Effect<Outcome> {
    return Effect.flatMap(this.control.take(), (message) =>
      Effect.flatMap(this.handle(message), (outcome): Effect.Effect<Outcome> => {
        if (outcome === undefined) return this.coordinate()
        const bodyFiber = this.bodyFiber!
        this.stopping = true
        // (a body that has ended, as after a completion, needs no interruption)
        return bodyFiber.unsafePoll() === null ? Effect.as(Fiber.interrupt(bodyFiber), outcome) : Effect.succeed(outcome)
      }))
  }

  private handle(message: Control): Effect.Effect<Outcome | undefined> {
    switch (message._tag) {
      case "BodyExit":
        return this.onBodyExit(message.exit)
      case "Fatal":
        return this.onFatal(message.error)
      case "CheckSuspend":
        // most checks find a step running: decided without an effect
        return this.canSuspend() ? this.trySuspend() : noOutcome
      case "ReplayDone":
        if (!this.scheduler.idle) {
          // the body is still reacting to the last replayed events: start live steps once it is blocked
          this.liveWhenIdle = true
          return noOutcome
        }
        if (this.liveStarted && !this.cancelPending) {
          // nothing to settle or cancel (a fresh execution): start the steps asked for so far
          this.openPendingGates()
          this.control.unsafeOffer({ _tag: "CheckSuspend" })
          return noOutcome
        }
        return Effect.as(this.startLive, undefined)
      case "Inbox":
        return Effect.as(this.reloadInbox, undefined)
      case "Signal": {
        this.receiveSignal(message.name, message.value)
        // The inbox version only advances by one known change at a time. A gap means another change
        // (another engine's signal or cancellation) came in between: reload the inbox rather than
        // jump past it, or a suspension would be accepted while that change stays unseen.
        if (message.inboxVersion <= this.inboxVersion) return noOutcome
        if (message.inboxVersion === this.inboxVersion + 1) {
          this.inboxVersion = message.inboxVersion
          return noOutcome
        }
        return Effect.as(this.reloadInbox, undefined)
      }
      case "Cancel":
        return Effect.as(this.beginCancel(false), undefined)
      case "Yield":
        return this.suspendForYield
    }
  }

  private onBodyExit(exit: Exit.Exit<unknown, unknown>): Effect.Effect<Outcome | undefined> {
    if (Exit.isSuccess(exit) && !this.suspendRequested && this.phase === "live" && !this.cancelling) {
      // the common case, without a generator: record the result
      const encoded = this.params.resultCodec.encode(exit as Exit.Exit<any, any>)
      if (Either.isRight(encoded)) return this.complete("completed", encoded.right ?? interruptJson)
    }
    return Effect.gen(this, function*() {
      if (this.suspendRequested) return undefined
      if (this.phase === "replay") {
        const next = this.history[this.cursor]
        if (next !== undefined && next.kind === "StepStarted" && next.stepKind !== "compensation") {
          return yield* this.onFatal(
            new NonDeterminismError({
              workflow: this.key.workflow,
              executionId: this.key.executionId,
              expected: describeEvent(next),
              actual: "the end of the workflow"
            })
          )
        }
      }
      if (Exit.isFailure(exit)) {
        const defect = Cause.dieOption(exit.cause)
        if (Option.isSome(defect) && isEngineFault(defect.value)) return yield* this.onFatal(defect.value)
      }
      if (this.cancelling) {
        yield* this.compensate
        const error = new WorkflowCancelledError({ workflow: this.key.workflow, executionId: this.key.executionId })
        return yield* this.complete("cancelled", dieJson(error))
      }
      if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
        yield* this.compensate
        return yield* this.complete("cancelled", interruptJson)
      }
      if (Exit.isFailure(exit)) yield* this.compensate
      const encoded = this.params.resultCodec.encode(exit as Exit.Exit<any, any>)
      if (Either.isLeft(encoded)) {
        return yield* this.onFatal(
          new EncodeError({
            workflow: this.key.workflow,
            executionId: this.key.executionId,
            step: "the workflow result",
            reason: encoded.left
          })
        )
      }
      return yield* this.complete(Exit.isSuccess(exit) ? "completed" : "failed", encoded.right ?? interruptJson)
    })
  }

  private onFatal(error: unknown): Effect.Effect<Outcome> {
    return Effect.gen(this, function*() {
      this.stopping = true
      if (this.bodyFiber) yield* Fiber.interrupt(this.bodyFiber)
      if (isTransientFault(error)) {
        this.broken = true
        return { _tag: "Stopped", error } as const
      }
      // A fault of the code (non-determinism, an undecodable journal entry, an unencodable value...): the
      // execution cannot go on with this code, but other code may carry it on. It is never an outcome.
      const fault = isCodeFault(error) ? error : new WorkflowUsageError({ message: String(error) })
      return yield* this.stuck(fault)
    })
  }

  /** Suspends the execution as stuck on `fault` (its events untouched), whatever its inbox holds. */
  private stuck(fault: CodeFault): Effect.Effect<Outcome> {
    return Effect.flatMap(this.writeSuspend(stuckOn(fault), null), (outcome): Effect.Effect<Outcome> => {
      // (the inbox changed meanwhile: suspend again with its new version)
      if (outcome === undefined) return this.stuck(fault)
      return Effect.succeed(outcome._tag === "Suspended" ? { _tag: "Stuck", fault } : outcome)
    })
  }

  /**
   * Records the outcome, unless an engine fault was reported meanwhile (e.g. while compensating, in the
   * coordinator): then that fault decides, and nothing is recorded.
   */
  private complete(status: ExecutionStatus, result: string): Effect.Effect<Outcome> {
    if (this.fault !== undefined) return this.onFatal(this.fault)
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const events = [this.event("ExecutionCompleted", "workflow", "[]", "", 0, result)]
      const write: JournalWrite = {
        _tag: "Append",
        key: this.key,
        fence: { owner: this.engine.owner, epoch: this.epoch },
        events,
        update: { status, result, completedAt: now },
        deliver: this.params.parentInbox === undefined ? undefined : { ...this.params.parentInbox, value: result },
        now
      }
      return Effect.map(Effect.exit(this.engine.committer.submit(write, this).await), (written): Outcome => {
        if (Exit.isFailure(written)) {
          const error = Cause.failureOption(written.cause)
          return {
            _tag: "Stopped",
            error: Option.getOrElse(error, () =>
              new JournalError({ operation: "complete", message: "interrupted", retryable: true }))
          }
        }
        if (written.value._tag !== "Ok") return { _tag: "Stopped", error: this.claimLost() }
        return { _tag: "Completed", status, result }
      })
    })
  }

  // ---------------------------------------------------------------------------------------------
  // suspension
  // ---------------------------------------------------------------------------------------------

  private canSuspend() {
    if (this.phase !== "live" || !this.liveStarted || this.cancelling || this.compensating || this.broken) return false
    if (this.active > 0 || this.waiting.size === 0) return false
    for (const step of this.inFlight) if (!this.waiting.has(step)) return false
    return true
  }

  private trySuspend(): Effect.Effect<Outcome | undefined> {
    return Effect.gen(this, function*() {
      // a body still running may ask for more (its idle check asks again)
      if (!this.canSuspend() || !this.scheduler.idle) return undefined
      let wakeAt: number | null = null
      const reasons = new Set<string>()
      for (const step of this.waiting) {
        if (step.waitingOn !== undefined) reasons.add(step.waitingOn)
        if (step.wakeAt !== undefined && (wakeAt === null || step.wakeAt < wakeAt)) wakeAt = step.wakeAt
      }
      const reason = Array.from(reasons).sort().join(",")
      return yield* this.writeSuspend(reason, wakeAt)
    })
  }

  private writeSuspend(reason: string, wakeAt: number | null): Effect.Effect<Outcome | undefined> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      this.suspending = true
      const settled = new OneShot<void>()
      this.suspendWrite = settled
      const written = yield* Effect.exit(this.engine.committer.submit({
        _tag: "Suspend",
        key: this.key,
        fence: { owner: this.engine.owner, epoch: this.epoch },
        inboxVersion: this.inboxVersion,
        suspendedOn: reason,
        wakeAt,
        now
      }).await).pipe(Effect.ensuring(Effect.sync(() => settled.unsafeDone(Exit.void))))
      if (Exit.isFailure(written)) {
        return { _tag: "Stopped", error: Option.getOrThrow(Cause.failureOption(written.cause)) } as const
      }
      switch (written.value._tag) {
        case "Ok": {
          // The claim is released: any later write of this runtime is fenced.
          this.suspendRequested = true
          this.broken = true
          return { _tag: "Suspended", wakeAt, reason } as const
        }
        case "InboxChanged": {
          this.suspending = false
          yield* this.reloadInbox
          this.control.unsafeOffer({ _tag: "CheckSuspend" })
          return undefined
        }
        default:
          return { _tag: "Stopped", error: this.claimLost() } as const
      }
    })
  }

  private get suspendForYield(): Effect.Effect<Outcome | undefined> {
    return Effect.gen(this, function*() {
      const outcome = yield* this.writeSuspend("yield", null)
      if (outcome === undefined && !this.cancelling) this.control.unsafeOffer({ _tag: "Yield" })
      return outcome
    })
  }

  // ---------------------------------------------------------------------------------------------
  // cancellation and compensation
  // ---------------------------------------------------------------------------------------------

  protected beginCancel(fromHistory: boolean): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      if (this.cancelling || this.compensating) return
      if (!fromHistory && (this.phase !== "live" || !this.liveStarted)) {
        this.cancelPending = true
        return
      }
      this.cancelling = true
      this.cancelPending = false
      // (the cancellation, journaled, interrupts every request on replay too: nothing to abandon one by one)
      this.stopping = true
      if (fromHistory) {
        this.bodyFiber?.unsafeInterruptAsFork(FiberId.none)
        return
      }
      // Stop the body first, so that every step it asked for is journaled before the cancellation.
      if (this.bodyFiber) yield* Fiber.interrupt(this.bodyFiber)
      const now = yield* Clock.currentTimeMillis
      this.pipeline([this.event("CancelRequested", "workflow", "[]", "", 0, "{}")], { cancelHandled: true }, now)
    })
  }

  /** Runs the compensations of completed activities in reverse order, each journaled as a step. */
  private get compensate(): Effect.Effect<void> {
    return Effect.suspend((): Effect.Effect<void> => {
      this.compensating = true
      const pending = this.compensations.slice().reverse()
      return Effect.forEach(pending, ({ run, step }) =>
        Effect.exit(this.runActivity({
          kind: "compensation",
          scope: step.scope,
          id: step.kind + ":" + step.id,
          codec: compensationCodec,
          body: run,
          retry: undefined,
          transactional: false
        })), { discard: true }).pipe(
          Effect.provideService(WorkflowContext, {
            workflow: this.key.workflow,
            executionId: this.key.executionId,
            version: this.params.version,
            scope: [],
            makePersistenceId: (localId) => `${this.key.executionId}__${localId}`,
            runtime: this
          }),
          Effect.provide(this.params.context)
        ) as Effect.Effect<void>
    })
  }

  /** Replay is over: once the body settled, start every step that is still asked for. */
  private get startLive(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      this.liveStarted = true
      this.openPendingGates()
      if (this.cancelPending) yield* this.beginCancel(false)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
    })
  }

  /** Suspends the execution until it is resumed (2024 `Workflow.yieldExecution`). */
  get yieldExecution(): Effect.Effect<never> {
    return Effect.suspend(() => {
      this.control.unsafeOffer({ _tag: "Yield" })
      return Effect.never
    })
  }
}

const compensationCodec = {
  encode: (exit: Exit.Exit<void, never>) =>
    Exit.isSuccess(exit)
      ? Either.right(voidJson)
      : Either.right(Option.match(Cause.dieOption(exit.cause), { onNone: () => undefined, onSome: dieJson })),
  decode: (json: string) => {
    const parsed = safeParse(json)
    return Either.right(parsed?._tag === "Die" ? Exit.die(parsed.defect) : Exit.void)
  },
  encodeSuccess: () => Either.right(voidJson)
} as unknown as ExitCodec<void, never>

/** `Context.merge(base, context)`, cached: every execution of an engine merges the same two contexts. */
const mergedContexts = new WeakMap<Context.Context<never>, WeakMap<Context.Context<never>, Context.Context<never>>>()
const mergedContext = (base: Context.Context<never>, context: Context.Context<never>): Context.Context<never> => {
  let byContext = mergedContexts.get(base)
  if (byContext === undefined) {
    byContext = new WeakMap()
    mergedContexts.set(base, byContext)
  }
  let merged = byContext.get(context)
  if (merged === undefined) {
    merged = Context.merge(base, context)
    byContext.set(context, merged)
  }
  return merged
}

const noOutcome: Effect.Effect<Outcome | undefined> = Effect.succeed(undefined)
