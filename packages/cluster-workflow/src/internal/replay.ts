/**
 * An execution's state and its replay: the journal's recorded events are matched, in order, against the
 * steps the workflow body asks for. While the journal has unread events, a step must be the one recorded
 * next, and recorded completions are handed out strictly in journal order, so concurrent branches
 * (`Effect.all`, `Effect.race`) see the same sequence as in the original run. Each live step waits at its
 * gate until the coordinator lets it start.
 *
 * The execution runtime is built in layers, one concern per module: replay and step matching (here),
 * timers (`timers.ts`), the inbox (`inbox.ts`), activities (`activities.ts`) and the coordinator
 * (`execution.ts`).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import type * as HashMap from "effect/HashMap"
import type * as Scheduler from "effect/Scheduler"
import type {
  EventRow,
  ExecutionKey,
  Journal,
  JournalWrite,
  RowUpdate,
  SignalRow
} from "../DurableExecutionJournal.js"
import type { WorkflowContext } from "../WorkflowContext.js"
import { ClaimLostError, JournalDecodeError, NonDeterminismError } from "../WorkflowError.js"
import type { ExitCodec } from "./codec.js"
import { voidJson } from "./codec.js"
import { BodyScheduler } from "./bodyScheduler.js"
import { ControlQueue } from "./controlQueue.js"
import type { Committer, WriteOwner } from "./groupCommit.js"
import { OneShot } from "./oneShot.js"
import type { StepKind } from "./stepRuntime.js"
import { stepKeyOf } from "./stepRuntime.js"

/** @internal */
export const describeStep = (kind: string, scope: string, id: string) =>
  scope === "[]" ? `${kind} "${id}"` : `${kind} "${id}" in scope ${scope}`

/** @internal */
export const describeEvent = (event: EventRow | undefined) =>
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
  ) => Effect.Effect<{ readonly result: string | undefined }, unknown>
  /** Resolves at `wakeAt` (engine clock), through the engine's single timer. */
  readonly sleepUntil: (wakeAt: number) => Effect.Effect<void>
  /**
   * Forks a fiber in the engine (interrupted with it) with this context and these log annotations;
   * `immediate` starts it synchronously, before `fork` returns.
   */
  readonly fork: <A, E>(
    effect: Effect.Effect<A, E, never>,
    refs: {
      readonly context: Context.Context<never>
      readonly logAnnotations: HashMap.HashMap<string, unknown>
      readonly scheduler: Scheduler.Scheduler
    },
    immediate: boolean
  ) => Fiber.RuntimeFiber<A, E>
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
  /** The encoded start payload: a start of the same id with another payload is refused. */
  readonly payload: string
  readonly payloadHash: string
  /** Created by this start: the journal has nothing for it yet. */
  readonly fresh: boolean
  /** A child's parent: its completion puts the result in that inbox under `name`, in the same write. */
  readonly parentInbox?: { readonly key: ExecutionKey; readonly name: string } | undefined
}

/** What a step's requester learns at its gate: the recorded outcome, or leave to run. @internal */
export type Gate =
  | { readonly _tag: "Done"; readonly json: string }
  | { readonly _tag: "Run" }

/** @internal */
export interface Step {
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
  /** Where the current request waits to learn its outcome or to run (new after an abandonment). */
  gate: OneShot<Gate>
  /** The outcome for repeated requests; undefined when the current request was abandoned. */
  done: OneShot<string | undefined>
  gateOpened: boolean
  /** The current request was interrupted before the step had a result (a race's loser, a timeout). */
  abandoned: boolean
  /** The journal records that abandonment (StepAbandoned), read on replay or written. */
  abandonRecorded: boolean
  /** Retry decisions recorded so far for the current request: when each was made. */
  retryTimes: Array<number>
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

const runGate: Gate = { _tag: "Run" }

/** Before the body starts: nothing of it is pending. */
const idleScheduler = new BodyScheduler({ shouldYield: () => false, scheduleTask: (task) => task() }, () => {})

/** @internal */
export const safeParse = (json: string): any => {
  try {
    return JSON.parse(json)
  } catch {
    return undefined
  }
}

/** @internal */
export const safeScope = (scope: string): ReadonlyArray<string> => {
  const parsed = safeParse(scope)
  return Array.isArray(parsed) ? parsed.map(String) : []
}

/** An execution's state, its journal writes and the matching of requested steps against its journal. @internal */
export abstract class Replay implements WriteOwner {
  broken = false
  readonly keyString: string
  protected readonly control = new ControlQueue()
  protected epoch: number
  protected inboxVersion: number
  protected cancelPending: boolean
  protected history: ReadonlyArray<EventRow> = []
  protected cursor = 0
  protected nextSequence = 0
  protected phase: "replay" | "live" = "replay"
  protected liveStarted = false
  protected readonly steps = new Map<string, Step>()
  protected readonly stepOrder: Array<Step> = []
  protected readonly signals = new Map<string, string>()
  protected readonly inFlight = new Set<Step>()
  protected readonly waiting = new Set<Step>()
  /** Activity bodies (and child starts) running now. */
  protected active = 0
  /**
   * A graceful shutdown is letting the activities in flight finish (see `ExecutionRuntime.drain`): no
   * activity attempt starts any more.
   */
  protected draining = false
  /** Done when `active` drops to 0 while draining. */
  protected drained: OneShot<void> | undefined = undefined
  protected readonly compensations: Array<{ readonly step: Step; readonly run: Effect.Effect<void, never, any> }> = []
  protected cancelling = false
  protected compensating = false
  protected bodyFiber: Fiber.RuntimeFiber<void> | undefined
  protected suspendRequested = false
  /** The first engine fault reported: no outcome is recorded once there is one. */
  protected fault: unknown = undefined
  /** The scheduler of the body's fibers: tells when the body is blocked (set by `begin`). */
  protected scheduler: BodyScheduler = idleScheduler
  /** The coordinator's clock (set by `begin`), for writes made outside an effect. */
  protected clock: Clock.Clock = Clock.make()
  /**
   * The body is being stopped as a whole (an outcome, a fault, a cancellation, the engine's scope): its
   * interrupted requests are not abandonments to journal.
   */
  protected stopping = false
  /** A suspension is being written: the execution is leaving this engine. */
  suspending = false
  /**
   * Done once the suspension write of a `suspending` runtime has its answer: until then the execution's
   * earlier writes (a step's result is pipelined) may not have committed, and a claim of it would fence
   * them (the step would run again).
   */
  suspendWrite: OneShot<void> | undefined = undefined
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

  get payload() {
    return this.params.payload
  }

  get currentEpoch() {
    return this.epoch
  }

  get currentInboxVersion() {
    return this.inboxVersion
  }

  /** The body is blocked (every fiber of it waits): called by its scheduler. */
  protected abstract onBodyIdle(): void

  /** A failure reported by the group committer for one of this execution's writes. */
  abstract onBroken(result: unknown): void

  /** Starts cancelling (`fromHistory`: a recorded cancellation met during replay). */
  protected abstract beginCancel(fromHistory: boolean): Effect.Effect<void>

  /** Loads the recorded events and signals (`begin` of a run). */
  protected load(events: ReadonlyArray<EventRow>, signals: ReadonlyArray<SignalRow>) {
    this.history = events
    this.nextSequence = events.length === 0 ? 0 : events[events.length - 1]!.sequence + 1
    for (const signal of signals) this.signals.set(signal.name, signal.value)
  }

  protected claimLost() {
    return new ClaimLostError({ workflow: this.key.workflow, executionId: this.key.executionId })
  }

  protected event(kind: string, stepKind: string, stepScope: string, stepId: string, attempt: number, body: string) {
    return { sequence: this.nextSequence++, kind, stepKind, stepScope, stepId, attempt, body }
  }

  /** An activity body (or a child start) is over: one less active, and a drain hears when none is left. */
  protected leaveActive() {
    this.active--
    this.checkDrained()
  }

  protected checkDrained() {
    if (this.active === 0) this.drained?.unsafeSucceed(undefined)
  }

  /** Submits an Append and returns its result, to be awaited. */
  protected submit(events: Array<EventRow>, update: RowUpdate | undefined, now: number) {
    return this.engine.committer.submit(this.append(events, update, now), this)
  }

  /**
   * Submits an Append nobody awaits (pipelined): a later awaited write of this execution commits after
   * it, and a failure breaks the execution (`onBroken`).
   */
  protected pipeline(events: Array<EventRow>, update: RowUpdate | undefined, now: number) {
    this.engine.committer.submitPipelined(this.append(events, update, now), this)
  }

  protected append(events: Array<EventRow>, update: RowUpdate | undefined, now: number): JournalWrite {
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
  protected advance() {
    while (this.cursor < this.history.length) {
      const event = this.history[this.cursor]!
      switch (event.kind) {
        case "StepStarted": {
          const step = this.steps.get(stepKeyOf(event.stepKind, event.stepScope, event.stepId))
          // a step not asked for yet, or asked for again after its abandonment: wait for the body's request
          if (step === undefined || step.abandoned) return
          step.attempt = Math.max(step.attempt, event.attempt)
          step.retryWakeAt = undefined
          this.cursor++
          break
        }
        case "StepCompleted": {
          const step = this.steps.get(stepKeyOf(event.stepKind, event.stepScope, event.stepId))
          this.cursor++
          if (step === undefined) {
            this.reportFault(
              new JournalDecodeError({
                workflow: this.key.workflow,
                executionId: this.key.executionId,
                step: describeEvent(event),
                reason: "a completion without a start"
              })
            )
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
        case "StepAbandoned": {
          const step = this.steps.get(stepKeyOf(event.stepKind, event.stepScope, event.stepId))
          this.cursor++
          if (step !== undefined) {
            // its requester was interrupted at this point of the original run, and is again on replay
            step.abandonRecorded = true
            this.abandon(step)
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
      this.recordAbandonments()
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

  /**
   * Replay is over: requests abandoned during replay whose abandonment the journal does not hold (the
   * original run stopped before writing it) are recorded now, so they are not run again after a crash.
   */
  private recordAbandonments() {
    for (const step of this.stepOrder) {
      if (step.abandoned && !step.abandonRecorded) this.recordAbandonment(step)
    }
  }

  /** Opens the gate of every step asked for and not yet started, resolved or abandoned. */
  protected openPendingGates() {
    for (const step of this.stepOrder) {
      if (step.result === undefined && !step.abandoned && !step.gateOpened) this.openGate(step)
    }
  }

  protected resolve(step: Step, json: string) {
    if (step.result !== undefined) return
    step.result = json
    this.inFlight.delete(step)
    if (!step.gateOpened) {
      step.gateOpened = true
      step.gate.unsafeSucceed({ _tag: "Done", json })
    }
    step.done.unsafeSucceed(json)
  }

  protected openGate(step: Step) {
    step.gateOpened = true
    this.inFlight.add(step)
    step.gate.unsafeSucceed(runGate)
  }

  /** Reports an engine fault to the coordinator (it decides: stop or stuck) and fails the step with it. */
  protected fatal(error: unknown): Effect.Effect<never> {
    this.reportFault(error)
    return Effect.die(error)
  }

  /** Reports an engine fault to the coordinator, which may be busy (compensating): see `fault`. */
  protected reportFault(error: unknown) {
    if (this.fault === undefined) this.fault = error
    this.control.unsafeOffer({ _tag: "Fatal", error })
  }

  /**
   * Registers a step requested by the body. Returns the step and whether this caller owns it (the first
   * requester runs it; a repeated request of the same id awaits the same outcome, as in 2024).
   */
  protected request(
    kind: StepKind,
    scope: string,
    id: string,
    legacyId?: string
  ): Effect.Effect<{ step: Step; first: boolean }> {
    return Effect.suspend((): Effect.Effect<{ step: Step; first: boolean }> => {
      const requested = this.requestNow(kind, scope, legacyId === undefined ? id : this.idOf(kind, scope, id, legacyId))
      return "step" in requested ? Effect.succeed(requested) : this.fatal(requested)
    })
  }

  /**
   * The id of a step whose id format changed: `legacyId` when this execution recorded (or already asked
   * for) the step under it, so journals written before the change still replay; `id` otherwise.
   */
  private idOf(kind: StepKind, scope: string, id: string, legacyId: string): string {
    const legacyKey = stepKeyOf(kind, scope, legacyId)
    if (this.steps.has(legacyKey)) return legacyId
    const next = this.phase === "replay" ? this.history[this.cursor] : undefined
    return next !== undefined && next.kind === "StepStarted" &&
        stepKeyOf(next.stepKind, next.stepScope, next.stepId) === legacyKey
      ? legacyId
      : id
  }

  /** `request` without an effect: the step, or the non-determinism to report. */
  protected requestNow(kind: StepKind, scope: string, id: string): { step: Step; first: boolean } | NonDeterminismError {
    const key = stepKeyOf(kind, scope, id)
    const existing = this.steps.get(key)
    // a repeated request awaits the same outcome, unless the step was abandoned without one: then this is
    // a new request of the same step (its next attempt, a re-armed wait)
    if (existing !== undefined && !(existing.abandoned && existing.result === undefined)) {
      return { step: existing, first: false }
    }
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
      step = existing === undefined ? this.register(kind, scope, id) : this.renew(existing)
      step.attempt = next.attempt
      step.startedBody = next.body
      this.cursor++
      this.advance()
    } else {
      step = existing === undefined ? this.register(kind, scope, id) : this.renew(existing)
      // compensations run after the body ended: nothing left to settle
      if (this.liveStarted || this.compensating) this.openGate(step)
    }
    return { step, first: true }
  }

  protected register(kind: StepKind, scope: string, id: string): Step {
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
      abandonRecorded: false,
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

  /** A new request of an abandoned step: it waits at a new gate; its attempts and waits start again. */
  private renew(step: Step): Step {
    step.gate = new OneShot()
    step.done = new OneShot()
    step.gateOpened = false
    step.abandoned = false
    step.abandonRecorded = false
    step.startedBody = undefined
    step.retryTimes = []
    step.retryWakeAt = undefined
    return step
  }

  /** Awaits the step's gate; an interrupted requester abandons the step (a race's loser). */
  protected awaitGate(step: Step): Effect.Effect<Gate> {
    return Effect.onInterrupt(step.gate.await, () => Effect.sync(() => this.abandon(step)))
  }

  protected decode<A, E>(step: Step, codec: ExitCodec<A, E>, json: string): Effect.Effect<A, E> {
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
  protected recordCompletion(step: Step, attempt: number, json: string, now: number) {
    this.pipeline([this.event("StepCompleted", step.kind, step.scope, step.id, attempt, json)], undefined, now)
    this.resolve(step, json)
  }

  /**
   * The step's requester was interrupted before the step had a result: the step is left without one and
   * the abandonment is journaled, so that neither a replay nor a crash restarts it; asking for the step
   * again is a new request (`renew`). Repeated requests waiting for its outcome ask again.
   */
  protected abandon(step: Step) {
    if (step.result !== undefined || step.abandoned) return
    step.abandoned = true
    this.inFlight.delete(step)
    if (!step.abandonRecorded && this.phase === "live") this.recordAbandonment(step)
    step.done.unsafeSucceed(undefined)
  }

  /**
   * Journals an abandonment of a step that has a recorded start (nothing to record otherwise), unless the
   * whole body is being stopped or the execution is leaving this engine (a suspension).
   */
  private recordAbandonment(step: Step) {
    if (step.attempt < 0 || this.stopping || this.broken || this.suspending) return
    step.abandonRecorded = true
    this.pipeline(
      [this.event("StepAbandoned", step.kind, step.scope, step.id, step.attempt, "{}")],
      undefined,
      this.clock.unsafeCurrentTimeMillis()
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
}
