/**
 * One live execution: replays its journal into the workflow body, runs new steps, and decides when the
 * execution completes, suspends or stops.
 *
 * The body runs as a fiber. Every step (activity, timer, signal, child, patch marker, compensation) asks
 * this runtime for its outcome. While the journal has unread events (replay), a step must be the one the
 * journal recorded next, and recorded completions are handed out strictly in journal order, so
 * concurrent branches (`Effect.all`, `Effect.race`) see the same sequence as in the original run. No new
 * step body starts until replay has passed every recorded event and the body has settled (a race's loser
 * is interrupted, not re-run). A coordinator fiber owns every decision; the body reaches it through a
 * control queue.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import type * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import { ActivityContext } from "../ActivityContext.js"
import type {
  EventRow,
  ExecutionKey,
  ExecutionStatus,
  Journal,
  JournalWrite,
  RowUpdate,
  SignalRow,
  WriteResult
} from "../DurableExecutionJournal.js"
import { JournalError } from "../DurableExecutionJournal.js"
import { WorkflowContext } from "../WorkflowContext.js"
import {
  ClaimLostError,
  EncodeError,
  JournalDecodeError,
  NonDeterminismError,
  WorkflowCancelledError,
  WorkflowUsageError
} from "../WorkflowError.js"
import type { ExitCodec } from "./codec.js"
import { dieJson, interruptJson, voidJson } from "./codec.js"
import type { Committer, WriteOwner } from "./groupCommit.js"
import { OneShot } from "./oneShot.js"

/** @internal */
export type StepKind = "activity" | "timer" | "signal" | "child" | "patch" | "compensation"

/** @internal */
export const stepKeyOf = (kind: string, scope: string, id: string): string => kind + "\u0000" + scope + "\u0000" + id

const describeStep = (kind: string, scope: string, id: string) =>
  scope === "[]" ? `${kind} "${id}"` : `${kind} "${id}" in scope ${scope}`

const describeEvent = (event: EventRow | undefined) =>
  event === undefined ? "the end of the journal" : describeStep(event.stepKind, event.stepScope, event.stepId)

/** @internal */
export const idempotencyKey = (workflow: string, executionId: string, scope: ReadonlyArray<string>, id: string) =>
  [workflow, executionId, ...scope, id].map(encodeURIComponent).join("/")

/** What the engine offers an execution. @internal */
export interface EngineServices {
  readonly journal: Journal
  readonly committer: Committer
  readonly owner: string
  readonly startChild: (
    parent: ExecutionKey,
    signal: string,
    childId: string,
    message: any
  ) => Effect.Effect<{ readonly result: string | undefined }, never>
  /** Resolves at `wakeAt` (engine clock), through the engine's single timer. */
  readonly sleepUntil: (wakeAt: number) => Effect.Effect<void>
  /**
   * Forks a fiber in the engine (interrupted with it) with this context and these log annotations;
   * `immediate` starts it synchronously, before `fork` returns.
   */
  readonly fork: <A, E>(
    effect: Effect.Effect<A, E, never>,
    refs: { readonly context: Context.Context<never>; readonly logAnnotations: HashMap.HashMap<string, unknown> },
    immediate: boolean
  ) => Fiber.RuntimeFiber<A, E>
}

/** How an execution run ended. @internal */
export type Outcome =
  | { readonly _tag: "Completed"; readonly status: ExecutionStatus; readonly result: string }
  | { readonly _tag: "Suspended"; readonly wakeAt: number | null; readonly reason: string }
  | { readonly _tag: "Stopped"; readonly error: ClaimLostError | JournalError }

/** A retry policy: an Effect Schedule fed with the failure (or defect). @internal */
export type RetryPolicy = Schedule.Schedule<unknown, unknown, never>

type Gate =
  | { readonly _tag: "Done"; readonly json: string }
  | { readonly _tag: "Run" }

interface Step {
  readonly key: string
  readonly kind: StepKind
  readonly scope: string
  readonly id: string
  /** Last recorded attempt (-1: none). */
  attempt: number
  /** The body of the first StepStarted event (timer deadline, child id...). */
  startedBody: string | undefined
  /** The recorded completion, once known. */
  result: string | undefined
  readonly gate: OneShot<Gate>
  readonly done: OneShot<string>
  gateOpened: boolean
  abandoned: boolean
  /** Retry decisions recorded so far: when each was made. */
  readonly retryTimes: Array<number>
  /** A recorded retry delay not yet waited out. */
  retryWakeAt: number | undefined
  /** Set while the step waits on a durable condition (timer, signal, child, retry). */
  wakeAt: number | undefined
  waitingOn: string | undefined
  signalName: string | undefined
  signalWaiter: OneShot<string> | undefined
  /** The activity's idempotency key, once computed. */
  idempotencyKey: string | undefined
}

/** A live run of an activity: the context its body replaced, while the body runs. */
interface LiveRun {
  previous: Context.Context<never> | undefined
}

/** What `runActivity` runs. */
interface ActivityRun<A, E, R> {
  readonly kind: "activity" | "compensation"
  readonly scope: string
  readonly id: string
  readonly codec: ExitCodec<A, E>
  readonly body: Effect.Effect<A, E, R>
  readonly retry: RetryPolicy | undefined
  readonly transactional: boolean
  readonly onSuccess?: ((value: A) => Effect.Effect<void, never, any>) | undefined
}

type Control =
  | { readonly _tag: "BodyExit"; readonly exit: Exit.Exit<unknown, unknown> }
  | { readonly _tag: "Fatal"; readonly error: unknown }
  | { readonly _tag: "CheckSuspend" }
  | { readonly _tag: "ReplayDone" }
  | { readonly _tag: "Inbox" }
  | { readonly _tag: "Signal"; readonly name: string; readonly value: string; readonly inboxVersion: number }
  | { readonly _tag: "Cancel" }
  | { readonly _tag: "Yield" }

/** The coordinator's mailbox: an array and one waiter (cheaper than a Queue per execution). */
class ControlQueue {
  private readonly items: Array<Control> = []
  private waiter: ((effect: Effect.Effect<Control>) => void) | undefined = undefined
  unsafeOffer(message: Control) {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter(Effect.succeed(message))
    } else {
      this.items.push(message)
    }
  }
  /** The next message (waits for one). */
  take(): Effect.Effect<Control> {
    const next = this.items.shift()
    if (next !== undefined) return Effect.succeed(next)
    return Effect.async<Control>((resume) => {
      const now = this.items.shift()
      if (now !== undefined) return resume(Effect.succeed(now))
      this.waiter = resume
      return Effect.sync(() => {
        if (this.waiter === resume) this.waiter = undefined
      })
    })
  }
}

/** @internal */
export interface ExecutionParams {
  readonly key: ExecutionKey
  readonly epoch: number
  readonly inboxVersion: number
  readonly cancelRequested: boolean
  readonly version: string
  readonly body: Effect.Effect<unknown, unknown, WorkflowContext>
  readonly context: Context.Context<never>
  readonly resultCodec: ExitCodec<any, any>
  readonly leaseMillis: number
  readonly payloadHash: string
  /** Created by this start: the journal has nothing for it yet. */
  readonly fresh: boolean
}

const isEngineFault = (u: unknown) =>
  u instanceof NonDeterminismError || u instanceof JournalDecodeError || u instanceof EncodeError

/** @internal */
export class ExecutionRuntime implements WriteOwner {
  broken = false
  readonly keyString: string
  private readonly control = new ControlQueue()
  private epoch: number
  private inboxVersion: number
  private cancelPending: boolean
  private history: ReadonlyArray<EventRow> = []
  private cursor = 0
  private nextSequence = 0
  private phase: "replay" | "live" = "replay"
  private liveStarted = false
  private readonly steps = new Map<string, Step>()
  private readonly stepOrder: Array<Step> = []
  private readonly signals = new Map<string, string>()
  private readonly inFlight = new Set<Step>()
  private readonly waiting = new Set<Step>()
  private active = 0
  private progress = 0
  private readonly compensations: Array<{ readonly step: Step; readonly run: Effect.Effect<void, never, any> }> = []
  private cancelling = false
  private compensating = false
  private bodyFiber: Fiber.RuntimeFiber<void> | undefined
  private suspendRequested = false
  /** A suspension is being written: the execution is leaving this engine. */
  suspending = false
  /** Resolved by the engine once this runtime has left it. */
  readonly done = new OneShot<void>()

  constructor(readonly engine: EngineServices, readonly params: ExecutionParams) {
    this.keyString = JSON.stringify([params.key.workflow, params.key.executionId])
    this.epoch = params.epoch
    this.inboxVersion = params.inboxVersion
    this.cancelPending = params.cancelRequested
  }

  get key() {
    return this.params.key
  }

  get payloadHash() {
    return this.params.payloadHash
  }

  get currentEpoch() {
    return this.epoch
  }

  get currentInboxVersion() {
    return this.inboxVersion
  }

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

  /** The claim was lost (renewal refused). */
  notifyClaimLost() {
    this.control.unsafeOffer({ _tag: "Fatal", error: this.claimLost() })
  }

  onBroken(result: unknown) {
    const error = result instanceof JournalError ? result : this.claimLost()
    this.control.unsafeOffer({ _tag: "Fatal", error })
  }

  private claimLost() {
    return new ClaimLostError({ workflow: this.key.workflow, executionId: this.key.executionId })
  }

  // ---------------------------------------------------------------------------------------------
  // the coordinator
  // ---------------------------------------------------------------------------------------------

  /**
   * Runs the execution until it completes, suspends or stops. If it is interrupted (or dies) instead, the
   * runner must then run `stopBody`.
   */
  get run(): Effect.Effect<Outcome> {
    // A just-created execution has no events and no signals: nothing to read.
    const started: Effect.Effect<Outcome> = this.params.fresh
      ? Effect.withFiberRuntime((fiber) => this.begin(fiber, [], []))
      : Effect.flatMap(
        Effect.either(Effect.zip(this.engine.journal.events(this.key, 0), this.engine.journal.signals(this.key))),
        (loaded): Effect.Effect<Outcome> =>
          Either.isLeft(loaded)
            ? Effect.succeed({ _tag: "Stopped", error: loaded.left })
            : Effect.withFiberRuntime((fiber) => this.begin(fiber, loaded.right[0], loaded.right[1]))
      )
    return started
  }

  /** Interrupts the body, unless it has ended (after `run` was interrupted). */
  get stopBody(): Effect.Effect<void> {
    const bodyFiber = this.bodyFiber
    return bodyFiber === undefined || bodyFiber.unsafePoll() !== null ? Effect.void : Effect.asVoid(Fiber.interrupt(bodyFiber))
  }

  /** Starts the body (in the coordinator's fiber `fiber`) and handles control messages until an outcome. */
  private begin(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    events: ReadonlyArray<EventRow>,
    signals: ReadonlyArray<SignalRow>
  ): Effect.Effect<Outcome> {
    this.history = events
    this.nextSequence = events.length === 0 ? 0 : events[events.length - 1]!.sequence + 1
    for (const signal of signals) this.signals.set(signal.name, signal.value)

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
      logAnnotations: fiber.getFiberRef(FiberRef.currentLogAnnotations)
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
        this.inboxVersion = Math.max(this.inboxVersion, message.inboxVersion)
        this.receiveSignal(message.name, message.value)
        return noOutcome
      }
      case "Cancel":
        return Effect.as(this.beginCancel(false), undefined)
      case "Yield":
        return this.suspendForYield
    }
  }

  private get reloadInbox(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const row = yield* Effect.either(this.engine.journal.get(this.key))
      const signals = yield* Effect.either(this.engine.journal.signals(this.key))
      if (Either.isLeft(row) || Either.isLeft(signals)) return
      if (Option.isSome(row.right)) {
        this.inboxVersion = Math.max(this.inboxVersion, row.right.value.inboxVersion)
        if (row.right.value.cancelRequested) this.cancelPending = true
      }
      for (const signal of signals.right) this.receiveSignal(signal.name, signal.value)
      if (this.cancelPending && this.phase === "live" && this.liveStarted) yield* this.beginCancel(false)
    })
  }

  private receiveSignal(name: string, value: string) {
    if (!this.signals.has(name)) this.signals.set(name, value)
    const stored = this.signals.get(name)!
    for (const step of this.waiting) {
      if (step.signalName === name && step.signalWaiter !== undefined) {
        step.signalWaiter.unsafeSucceed(stored)
      }
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
      if (this.bodyFiber) yield* Fiber.interrupt(this.bodyFiber)
      if (error instanceof ClaimLostError || error instanceof JournalError) {
        this.broken = true
        return { _tag: "Stopped", error } as const
      }
      // An engine fault (non-determinism, undecodable journal entry, unencodable value): the execution
      // cannot go on with this code. Record it as failed without touching its events.
      const result = dieJson(error)
      const outcome = yield* this.complete("failed", result, false)
      return outcome
    })
  }

  private complete(status: ExecutionStatus, result: string, withEvent = true): Effect.Effect<Outcome> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const events = withEvent ? [this.event("ExecutionCompleted", "workflow", "[]", "", 0, result)] : []
      const write: JournalWrite = {
        _tag: "Append",
        key: this.key,
        fence: { owner: this.engine.owner, epoch: this.epoch },
        events,
        update: { status, result, completedAt: now },
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

  /** Lets the body run until it blocks: chains of fibers resumed by the last event get to react. */
  private get settle(): Effect.Effect<void> {
    return Effect.suspend(() => {
      let seen = -1
      let quiet = 0
      const loop: Effect.Effect<void> = Effect.suspend(() => {
        if (this.progress === seen) quiet++
        else quiet = 0
        seen = this.progress
        return quiet >= 3 ? Effect.void : Effect.zipRight(Effect.yieldNow(), loop)
      })
      return loop
    })
  }

  private trySuspend(): Effect.Effect<Outcome | undefined> {
    return Effect.gen(this, function*() {
      if (!this.canSuspend()) return undefined
      yield* this.settle
      if (!this.canSuspend()) return undefined
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
      const written = yield* Effect.exit(this.engine.committer.submit({
        _tag: "Suspend",
        key: this.key,
        fence: { owner: this.engine.owner, epoch: this.epoch },
        inboxVersion: this.inboxVersion,
        suspendedOn: reason,
        wakeAt,
        now
      }).await)
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

  private beginCancel(fromHistory: boolean): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      if (this.cancelling || this.compensating) return
      if (!fromHistory && (this.phase !== "live" || !this.liveStarted)) {
        this.cancelPending = true
        return
      }
      this.cancelling = true
      this.cancelPending = false
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

  // ---------------------------------------------------------------------------------------------
  // replay
  // ---------------------------------------------------------------------------------------------

  private event(kind: string, stepKind: string, stepScope: string, stepId: string, attempt: number, body: string) {
    return { sequence: this.nextSequence++, kind, stepKind, stepScope, stepId, attempt, body }
  }

  /** Submits an Append and returns its result, to be awaited. */
  private submit(events: Array<EventRow>, update: RowUpdate | undefined, now: number) {
    return this.engine.committer.submit(this.append(events, update, now), this)
  }

  /**
   * Submits an Append nobody awaits (pipelined): a later awaited write of this execution commits after
   * it, and a failure breaks the execution (`onBroken`).
   */
  private pipeline(events: Array<EventRow>, update: RowUpdate | undefined, now: number) {
    this.engine.committer.submitPipelined(this.append(events, update, now), this)
  }

  private append(events: Array<EventRow>, update: RowUpdate | undefined, now: number): JournalWrite {
    return {
      _tag: "Append",
      key: this.key,
      fence: { owner: this.engine.owner, epoch: this.epoch },
      events,
      update,
      now
    }
  }

  /** Processes recorded events until one needs the body to ask for a step it has not asked for yet. */
  private advance() {
    while (this.cursor < this.history.length) {
      const event = this.history[this.cursor]!
      switch (event.kind) {
        case "StepStarted": {
          const step = this.steps.get(stepKeyOf(event.stepKind, event.stepScope, event.stepId))
          if (step === undefined) return
          step.attempt = Math.max(step.attempt, event.attempt)
          step.retryWakeAt = undefined
          this.cursor++
          break
        }
        case "StepCompleted": {
          const step = this.steps.get(stepKeyOf(event.stepKind, event.stepScope, event.stepId))
          this.cursor++
          if (step === undefined) {
            this.control.unsafeOffer({
              _tag: "Fatal",
              error: new JournalDecodeError({
                workflow: this.key.workflow,
                executionId: this.key.executionId,
                step: describeEvent(event),
                reason: "a completion without a start"
              })
            })
            return
          }
          this.resolve(step, event.body)
          break
        }
        case "StepRetrying": {
          const step = this.steps.get(stepKeyOf(event.stepKind, event.stepScope, event.stepId))
          this.cursor++
          if (step !== undefined) {
            const body = safeParse(event.body)
            step.retryTimes.push(typeof body?.at === "number" ? body.at : 0)
            step.retryWakeAt = typeof body?.wakeAt === "number" ? body.wakeAt : undefined
          }
          break
        }
        case "CancelRequested": {
          this.cursor++
          Effect.runSync(this.beginCancel(true))
          break
        }
        default:
          this.cursor++
      }
    }
    if (this.phase === "replay") {
      this.phase = "live"
      if (this.compensating) {
        // The body is over; the coordinator is busy compensating: start the remaining steps now.
        this.liveStarted = true
        for (const step of this.stepOrder) {
          if (step.result === undefined && !step.abandoned && !step.gateOpened) this.openGate(step)
        }
      } else {
        this.control.unsafeOffer({ _tag: "ReplayDone" })
      }
    }
  }

  /** Replay is over: once the body settled, start every step that is still asked for. */
  private get startLive(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      if (!this.liveStarted) yield* this.settle
      this.liveStarted = true
      this.openPendingGates()
      if (this.cancelPending) yield* this.beginCancel(false)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
    })
  }

  /** Opens the gate of every step asked for and not yet started, resolved or abandoned. */
  private openPendingGates() {
    for (const step of this.stepOrder) {
      if (step.result === undefined && !step.abandoned && !step.gateOpened) this.openGate(step)
    }
  }

  private resolve(step: Step, json: string) {
    if (step.result !== undefined) return
    step.result = json
    this.progress++
    this.inFlight.delete(step)
    if (!step.gateOpened) {
      step.gateOpened = true
      step.gate.unsafeSucceed({ _tag: "Done", json })
    }
    step.done.unsafeSucceed(json)
  }

  private openGate(step: Step) {
    step.gateOpened = true
    this.inFlight.add(step)
    step.gate.unsafeSucceed(runGate)
  }

  private fatal(error: unknown): Effect.Effect<never> {
    this.control.unsafeOffer({ _tag: "Fatal", error })
    return Effect.die(error)
  }

  /**
   * Registers a step requested by the body. Returns the step and whether this caller owns it (the first
   * requester runs it; a repeated request of the same id awaits the same outcome, as in 2024).
   */
  private request(kind: StepKind, scope: string, id: string): Effect.Effect<{ step: Step; first: boolean }> {
    return Effect.suspend((): Effect.Effect<{ step: Step; first: boolean }> => {
      const requested = this.requestNow(kind, scope, id)
      return "step" in requested ? Effect.succeed(requested) : this.fatal(requested)
    })
  }

  /** `request` without an effect: the step, or the non-determinism to report. */
  private requestNow(kind: StepKind, scope: string, id: string): { step: Step; first: boolean } | NonDeterminismError {
    this.progress++
    const key = stepKeyOf(kind, scope, id)
    const existing = this.steps.get(key)
    if (existing !== undefined) return { step: existing, first: false }
    let step: Step
    if (this.phase === "replay") {
      const next = this.history[this.cursor]
      if (next === undefined || next.kind !== "StepStarted" || stepKeyOf(next.stepKind, next.stepScope, next.stepId) !== key) {
        return new NonDeterminismError({
          workflow: this.key.workflow,
          executionId: this.key.executionId,
          expected: describeEvent(next),
          actual: describeStep(kind, scope, id)
        })
      }
      step = this.register(kind, scope, id)
      step.attempt = next.attempt
      step.startedBody = next.body
      this.cursor++
      this.advance()
    } else {
      step = this.register(kind, scope, id)
      // compensations run after the body ended: nothing left to settle
      if (this.liveStarted || this.compensating) this.openGate(step)
    }
    return { step, first: true }
  }

  private register(kind: StepKind, scope: string, id: string): Step {
    const step: Step = {
      key: stepKeyOf(kind, scope, id),
      kind,
      scope,
      id,
      attempt: -1,
      startedBody: undefined,
      result: undefined,
      gate: new OneShot(),
      done: new OneShot(),
      gateOpened: false,
      abandoned: false,
      retryTimes: [],
      retryWakeAt: undefined,
      wakeAt: undefined,
      waitingOn: undefined,
      signalName: undefined,
      signalWaiter: undefined,
      idempotencyKey: undefined
    }
    this.steps.set(step.key, step)
    this.stepOrder.push(step)
    return step
  }

  /** Awaits the step's gate; an interrupted requester abandons the step (a race's loser). */
  private awaitGate(step: Step): Effect.Effect<Gate> {
    return Effect.onInterrupt(step.gate.await, () =>
      Effect.sync(() => {
        if (step.result === undefined) {
          step.abandoned = true
          this.inFlight.delete(step)
          this.progress++
        }
      }))
  }

  private decode<A, E>(step: Step, codec: ExitCodec<A, E>, json: string): Effect.Effect<A, E> {
    const decoded = codec.decode(json)
    if (Either.isLeft(decoded)) {
      return this.fatal(
        new JournalDecodeError({
          workflow: this.key.workflow,
          executionId: this.key.executionId,
          step: describeStep(step.kind, step.scope, step.id),
          reason: decoded.left
        })
      )
    }
    return decoded.right
  }

  /** Writes the step's completion (pipelined: later writes of this execution commit after it). */
  private recordCompletion(step: Step, attempt: number, json: string, now: number) {
    this.pipeline([this.event("StepCompleted", step.kind, step.scope, step.id, attempt, json)], undefined, now)
    this.resolve(step, json)
  }

  /** Leaves the step in flight, without a result (its fiber was interrupted). */
  private abandon(step: Step) {
    if (step.result === undefined) {
      step.abandoned = true
      this.inFlight.delete(step)
      this.progress++
    }
  }

  /** Waits until `wakeAt` as a durable wait: the execution may suspend meanwhile. */
  private waitUntil(step: Step, wakeAt: number, reason: string): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      if (now >= wakeAt) return
      step.wakeAt = wakeAt
      step.waitingOn = reason
      this.waiting.add(step)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
      yield* this.engine.sleepUntil(wakeAt).pipe(
        Effect.ensuring(Effect.sync(() => {
          this.waiting.delete(step)
          step.wakeAt = undefined
          step.waitingOn = undefined
        }))
      )
    })
  }

  /** Waits for a signal (durable: the execution may suspend meanwhile). */
  private waitSignal(step: Step, name: string, reason: string): Effect.Effect<string> {
    const stored = this.signals.get(name)
    if (stored !== undefined) return Effect.succeed(stored)
    return Effect.suspend(() => {
      const waiter = new OneShot<string>()
      step.signalName = name
      step.signalWaiter = waiter
      step.waitingOn = reason
      this.waiting.add(step)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
      return waiter.await.pipe(
        Effect.ensuring(Effect.sync(() => {
          this.waiting.delete(step)
          step.signalWaiter = undefined
          step.waitingOn = undefined
        }))
      )
    })
  }

  // ---------------------------------------------------------------------------------------------
  // steps
  // ---------------------------------------------------------------------------------------------

  /** Runs an activity (or a compensation) as a journaled step. */
  runActivity<A, E, R>(options: ActivityRun<A, E, R>): Effect.Effect<A, E, Exclude<R, ActivityContext>> {
    return Effect.suspend((): Effect.Effect<A, E, any> => {
      const requested = this.requestNow(options.kind, options.scope, options.id)
      if (!("step" in requested)) return this.fatal(requested)
      const { first, step } = requested
      if (!first) return Effect.flatMap(step.done.await, (json) => this.decode(step, options.codec, json))
      const recorded = (json: string): Effect.Effect<A, E> => {
        const decoded = this.decode(step, options.codec, json)
        const onSuccess = options.onSuccess
        if (onSuccess === undefined || this.compensating) return decoded
        return Effect.tap(decoded, (value) => {
          this.compensations.push({ step, run: onSuccess(value) })
        })
      }
      const gate = step.gate.unsafePoll
      // replayed: its result is known
      if (gate !== undefined && Exit.isSuccess(gate) && gate.value._tag === "Done") return recorded(gate.value.json)
      const live: LiveRun = { previous: undefined }
      // Hot path: a live step whose gate is already open runs without waiting on it.
      const json: Effect.Effect<string, never, any> = gate !== undefined && Exit.isSuccess(gate)
        ? this.runActivityLive(step, options, live)
        : Effect.flatMap(
          step.gate.await,
          (gate): Effect.Effect<string, never, any> =>
            gate._tag === "Done" ? Effect.succeed(gate.json) : this.runActivityLive(step, options, live)
        )
      // However it ends: a body left by interruption (or a defect) gets its context back and stops counting
      // as active, and an interrupted requester abandons the step (a race's loser), whether it waited or ran.
      return Effect.flatMap(
        Effect.onExit(json, (exit): Effect.Effect<void> => {
          const restore = this.leaveBody(live)
          if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) this.abandon(step)
          return restore
        }),
        recorded
      )
    }) as any
  }

  /** The body of a live run is over: it stops counting as active and the fiber gets its context back. */
  private leaveBody(live: LiveRun): Effect.Effect<void> {
    const previous = live.previous
    if (previous === undefined) return Effect.void
    live.previous = undefined
    this.active--
    return FiberRef.set(FiberRef.currentContext, previous)
  }

  /** Runs the step's attempts (after any recorded retry delay) until it has a result to record. */
  private runActivityLive<A, E, R>(
    step: Step,
    options: ActivityRun<A, E, R>,
    live: LiveRun
  ): Effect.Effect<string, never, any> {
    const retryWakeAt = step.retryWakeAt
    if (retryWakeAt === undefined) return this.attemptActivity(step, options, live)
    return Effect.flatMap(this.waitUntil(step, retryWakeAt, "retry"), () => {
      step.retryWakeAt = undefined
      return this.attemptActivity(step, options, live)
    })
  }

  /** One attempt: record it, run the body, then record the result or a retry decision. */
  private attemptActivity<A, E, R>(
    step: Step,
    options: ActivityRun<A, E, R>,
    live: LiveRun
  ): Effect.Effect<string, never, any> {
    return Effect.withFiberRuntime((fiber) => {
      const attempt = step.attempt + 1
      step.attempt = attempt
      // The attempt is recorded before the body runs (sharing a commit with earlier pipelined writes).
      const started = this.submit(
        [this.event("StepStarted", step.kind, step.scope, step.id, attempt, "{}")],
        undefined,
        clockOf(fiber).unsafeCurrentTimeMillis()
      )
      // committed already (a journal that commits synchronously): go on without waiting
      const committed = started.unsafePoll
      if (committed !== undefined && Exit.isSuccess(committed)) {
        return this.runAttempt(step, attempt, committed.value, options, live)
      }
      return Effect.flatMap(
        started.awaitExit,
        (exit): Effect.Effect<string, never, any> =>
          Exit.isSuccess(exit) ? this.runAttempt(step, attempt, exit.value, options, live) : Effect.orDie(Effect.failCause(exit.cause))
      )
    })
  }

  private runAttempt<A, E, R>(
    step: Step,
    attempt: number,
    started: WriteResult,
    options: ActivityRun<A, E, R>,
    live: LiveRun
  ): Effect.Effect<string, never, any> {
    if (started._tag !== "Ok") return Effect.interrupt
    const key = step.idempotencyKey ??
      (step.idempotencyKey = idempotencyKey(this.key.workflow, this.key.executionId, safeScope(step.scope), step.id))
    const activityContext: Context.Tag.Service<ActivityContext> = {
      persistenceId: key,
      idempotencyKey: key,
      currentAttempt: attempt,
      workflow: this.key.workflow,
      executionId: this.key.executionId,
      activityId: step.id
    }
    if (options.transactional) return this.runTransactional(step, attempt, options, activityContext)
    return this.runBody(step, attempt, options, activityContext, live)
  }

  /**
   * Runs an activity body with its `ActivityContext`, counted as active. The context is set on the fiber
   * and restored afterwards (what `provideService` does, without its acquire/release machinery); if the
   * body is interrupted, `runActivity` restores it (`live`).
   */
  private runBody<A, E, R>(
    step: Step,
    attempt: number,
    options: ActivityRun<A, E, R>,
    activityContext: Context.Tag.Service<ActivityContext>,
    live: LiveRun
  ): Effect.Effect<string, never, any> {
    return Effect.withFiberRuntime<string, never, any>((fiber) => {
      const previous = fiber.getFiberRef(FiberRef.currentContext)
      live.previous = previous
      this.active++
      setFiberRef(fiber, FiberRef.currentContext, Context.add(previous, ActivityContext, activityContext))
      // (a continuation runs on the fiber that ran the body: `fiber`)
      return Effect.flatMap(Effect.exit(options.body), (exit) => {
        if (live.previous !== undefined) {
          setFiberRef(fiber, FiberRef.currentContext, live.previous)
          live.previous = undefined
          this.active--
        }
        return this.afterAttempt(step, attempt, exit, options, live, fiber)
      })
    })
  }

  private afterAttempt<A, E, R>(
    step: Step,
    attempt: number,
    exit: Exit.Exit<A, E>,
    options: ActivityRun<A, E, R>,
    live: LiveRun,
    fiber: Fiber.RuntimeFiber<unknown, unknown>
  ): Effect.Effect<string, never, any> {
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
      this.abandon(step)
      return Effect.interrupt
    }
    {
      const decidedAt = clockOf(fiber).unsafeCurrentTimeMillis()
      if (Exit.isFailure(exit) && options.retry !== undefined) {
        return Effect.flatMap(this.retryDelay(options.retry, step, exit.cause, decidedAt), (delay) => {
          if (Option.isNone(delay)) return this.finishAttempt(step, attempt, exit, options.codec, decidedAt)
          const failure = options.codec.encode(exit)
          const wakeAt = decidedAt + delay.value
          const body = JSON.stringify({
            at: decidedAt,
            wakeAt,
            exit: Either.isRight(failure) && failure.right !== undefined ? JSON.parse(failure.right) : null
          })
          this.pipeline([this.event("StepRetrying", step.kind, step.scope, step.id, attempt, body)], undefined, decidedAt)
          step.retryTimes.push(decidedAt)
          step.retryWakeAt = wakeAt
          return this.runActivityLive(step, options, live)
        })
      }
      return this.finishAttempt(step, attempt, exit, options.codec, decidedAt)
    }
  }

  private finishAttempt<A, E>(
    step: Step,
    attempt: number,
    exit: Exit.Exit<A, E>,
    codec: ExitCodec<A, E>,
    decidedAt: number
  ): Effect.Effect<string> {
    const encoded = codec.encode(exit)
    if (Either.isLeft(encoded)) {
      return this.fatal(
        new EncodeError({
          workflow: this.key.workflow,
          executionId: this.key.executionId,
          step: describeStep(step.kind, step.scope, step.id),
          reason: encoded.left
        })
      )
    }
    const json = encoded.right ?? interruptJson
    this.recordCompletion(step, attempt, json, decidedAt)
    return Effect.succeed(json)
  }

  /**
   * Replays the retry schedule over the recorded decisions (same inputs, same times) to restore its
   * state, then asks it about this failure. Past delays come from the journal; only the new decision is
   * computed, once, and recorded.
   */
  private retryDelay(
    policy: RetryPolicy,
    step: Step,
    cause: Cause.Cause<unknown>,
    now: number
  ): Effect.Effect<Option.Option<number>> {
    return Effect.gen(function*() {
      const input = Option.getOrElse(Cause.failureOption(cause), () => Option.getOrUndefined(Cause.dieOption(cause)))
      let state = policy.initial
      for (const at of step.retryTimes) {
        const [next] = yield* policy.step(at, input, state)
        state = next
      }
      const [, , decision] = yield* policy.step(now, input, state)
      if (isDone(decision)) return Option.none()
      const start = ScheduleIntervals.start(decision.intervals)
      return Option.some(Math.max(0, start - now))
    })
  }

  private runTransactional<A, E, R>(
    step: Step,
    attempt: number,
    options: { readonly codec: ExitCodec<A, E>; readonly body: Effect.Effect<A, E, R> },
    activityContext: Context.Tag.Service<ActivityContext>
  ): Effect.Effect<string, never, any> {
    return Effect.gen(this, function*() {
      const sql = this.engine.journal.sql
      const userClient = yield* Effect.serviceOption(SqlClientTag)
      if (sql === undefined || Option.isNone(userClient) || userClient.value !== sql.client) {
        return yield* this.fatal(
          new WorkflowUsageError({
            message: "A transactional activity needs a SQL journal on the same SqlClient as the activity"
          })
        )
      }
      this.active++
      const result = yield* sql.withTransaction(Effect.gen(this, function*() {
        const exit = yield* Effect.exit(Effect.provideService(options.body, ActivityContext, activityContext))
        if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) return yield* Effect.interrupt
        const encoded = options.codec.encode(exit)
        if (Either.isLeft(encoded)) return yield* Effect.fail({ _tag: "Encode" as const, reason: encoded.left })
        const json = encoded.right ?? interruptJson
        const now = yield* Clock.currentTimeMillis
        // Written inside the same transaction as the body's own writes, outside group commit.
        const [written] = yield* this.engine.journal.commit([{
          _tag: "Append",
          key: this.key,
          fence: { owner: this.engine.owner, epoch: this.epoch },
          events: [this.event("StepCompleted", step.kind, step.scope, step.id, attempt, json)],
          update: undefined,
          now
        }])
        if (written?._tag !== "Ok") return yield* Effect.fail({ _tag: "Fenced" as const })
        return json
      })).pipe(
        Effect.ensuring(Effect.sync(() => {
          this.active--
        })),
        Effect.either
      )
      if (Either.isLeft(result)) {
        const error = result.left as any
        if (error?._tag === "Encode") {
          return yield* this.fatal(
            new EncodeError({
              workflow: this.key.workflow,
              executionId: this.key.executionId,
              step: describeStep(step.kind, step.scope, step.id),
              reason: error.reason
            })
          )
        }
        return yield* this.fatal(error instanceof JournalError ? error : this.claimLost())
      }
      this.resolve(step, result.right)
      return result.right
    })
  }

  /** A durable sleep: the deadline is recorded when the sleep starts. */
  sleep(scope: string, id: string, millis: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const { first, step } = yield* this.request("timer", scope, id)
      if (!first) {
        yield* step.done.await
        return
      }
      const gate = yield* this.awaitGate(step)
      if (gate._tag === "Done") return
      yield* Effect.gen(this, function*() {
        let wakeAt: number
        if (step.startedBody !== undefined) {
          wakeAt = safeParse(step.startedBody)?.wakeAt ?? 0
        } else {
          const now = yield* Clock.currentTimeMillis
          wakeAt = now + millis
          step.startedBody = JSON.stringify({ wakeAt })
          step.attempt = 0
          this.pipeline([this.event("StepStarted", "timer", scope, id, 0, step.startedBody)], undefined, now)
        }
        yield* this.waitUntil(step, wakeAt, "timer")
        this.recordCompletion(step, 0, voidJson, yield* Clock.currentTimeMillis)
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => this.abandon(step))))
    })
  }

  /**
   * A step completed by a value arriving in the inbox under `signalName` (a signal, or a child's result):
   * records its start, runs `beforeWait` once (e.g. starting the child), waits (durably: the execution may
   * suspend meanwhile) and records the value as the step's result.
   */
  private inboxStep(
    kind: "signal" | "child",
    scope: string,
    id: string,
    signalName: string,
    reason: string,
    beforeWait: Effect.Effect<void>
  ): Effect.Effect<{ readonly step: Step; readonly json: string }> {
    return Effect.gen(this, function*() {
      const { first, step } = yield* this.request(kind, scope, id)
      if (!first) return { step, json: yield* step.done.await }
      const gate = yield* this.awaitGate(step)
      if (gate._tag === "Done") return { step, json: gate.json }
      const json = yield* Effect.gen(this, function*() {
        if (step.startedBody === undefined) {
          step.startedBody = "{}"
          step.attempt = 0
          this.pipeline([this.event("StepStarted", kind, scope, id, 0, "{}")], undefined, yield* Clock.currentTimeMillis)
        }
        if (!this.signals.has(signalName)) yield* beforeWait
        const value = yield* this.waitSignal(step, signalName, reason)
        this.recordCompletion(step, 0, value, yield* Clock.currentTimeMillis)
        return value
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => this.abandon(step))))
      return { step, json }
    })
  }

  /** Waits for a signal (a durable deferred) by name. */
  awaitSignal<A, E>(scope: string, name: string, codec: ExitCodec<A, E>): Effect.Effect<A, E> {
    return Effect.flatMap(
      this.inboxStep("signal", scope, name, name, "signal:" + name, Effect.void),
      ({ json, step }) => this.decode(step, codec, json)
    )
  }

  /** Starts a child workflow (once) and waits for its result. */
  child<A, E>(scope: string, id: string, message: unknown, codec: ExitCodec<A, E>): Effect.Effect<A, E> {
    const signalName = childSignalName(scope, id)
    const startChild = Effect.suspend(() => {
      this.active++
      const childId = [this.key.executionId, ...safeScope(scope), id].map(encodeURIComponent).join("/")
      return this.engine.startChild(this.key, signalName, childId, message).pipe(
        Effect.tap((started) =>
          Effect.sync(() => {
            if (started.result !== undefined) this.receiveSignal(signalName, started.result)
          })
        ),
        Effect.ensuring(Effect.sync(() => {
          this.active--
        })),
        Effect.asVoid
      )
    })
    return Effect.flatMap(
      this.inboxStep("child", scope, id, signalName, "child", startChild),
      ({ json, step }) => this.decode(step, codec, json)
    )
  }

  /**
   * A version marker: true for executions that recorded it (or start after it was added), false for
   * executions whose journal went past this point without it.
   */
  patched(scope: string, id: string): Effect.Effect<boolean> {
    return Effect.gen(this, function*() {
      const key = stepKeyOf("patch", scope, id)
      if (this.steps.has(key)) return true
      if (this.phase === "replay") {
        const next = this.history[this.cursor]
        if (next === undefined || next.kind !== "StepStarted" || stepKeyOf(next.stepKind, next.stepScope, next.stepId) !== key) {
          return false
        }
        yield* this.request("patch", scope, id)
        return true
      }
      const step = this.register("patch", scope, id)
      step.gateOpened = true
      const now = yield* Clock.currentTimeMillis
      this.pipeline([
        this.event("StepStarted", "patch", scope, id, 0, "{}"),
        this.event("StepCompleted", "patch", scope, id, 0, voidJson)
      ], undefined, now)
      this.resolve(step, voidJson)
      return true
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

/** `@effect/sql`'s SqlClient tag, by key, so this module does not import the package. */
const SqlClientTag = Context.GenericTag<unknown>("@effect/sql/SqlClient")

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

const runGate: Gate = { _tag: "Run" }

/**
 * Sets a fiber ref of the running fiber `fiber` (from inside its own `withFiberRuntime` or a continuation
 * of it) without an effect: what `FiberRef.set` does in its `withFiberRuntime`.
 */
const setFiberRef = <A>(fiber: Fiber.RuntimeFiber<unknown, unknown>, ref: FiberRef.FiberRef<A>, value: A): void =>
  (fiber as unknown as { setFiberRef(ref: FiberRef.FiberRef<A>, value: A): void }).setFiberRef(ref, value)

/** The fiber's clock: what `Clock.currentTimeMillis` reads, without its effect. */
const clockOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Clock.Clock =>
  Context.get(fiber.currentDefaultServices, Clock.Clock)

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

const isDone = (decision: ScheduleDecision.ScheduleDecision): decision is ScheduleDecision.Done =>
  decision._tag === "Done"

/** The inbox name under which a child's result reaches its parent (text only: it is stored in SQL). */
export const childSignalName = (scope: string, id: string) => "~child/" + JSON.stringify([scope, id])

const safeParse = (json: string): any => {
  try {
    return JSON.parse(json)
  } catch {
    return undefined
  }
}

const safeScope = (scope: string): ReadonlyArray<string> => {
  const parsed = safeParse(scope)
  return Array.isArray(parsed) ? parsed.map(String) : []
}

/** @internal */
export const retryPolicy = (
  options: Schedule.Schedule<any, any, never> | { readonly times: number; readonly backoff?: Duration.DurationInput }
): RetryPolicy =>
  Schedule.isSchedule(options)
    ? options as RetryPolicy
    : (options.backoff === undefined
      ? Schedule.recurs(options.times)
      : Schedule.intersect(Schedule.exponential(options.backoff), Schedule.recurs(options.times))) as RetryPolicy

