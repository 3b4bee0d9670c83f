/**
 * The engine: starts, joins, resumes and wakes executions; arms one timer for the earliest deadline;
 * renews the claims of live executions; delivers signals and cancellations.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as FiberSet from "effect/FiberSet"
import * as HashMap from "effect/HashMap"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import type * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { ExecutionKey, ExecutionRow, Journal } from "../DurableExecutionJournal.js"
import { formatVersion, isTerminal, JournalError } from "../DurableExecutionJournal.js"
import type { WorkflowDefinition } from "../Workflow.js"
import {
  EncodeError,
  ExecutionNotFoundError,
  PayloadDecodeError,
  PayloadMismatchError,
  EngineClosedError,
  WorkflowCancelledError,
  WorkflowUsageError
} from "../WorkflowError.js"
import type { ExitCodec } from "./codec.js"
import { exitCodec, payloadHash } from "./codec.js"
import * as GroupCommit from "./groupCommit.js"
import { invalidIdReason } from "./ids.js"
import type { EngineServices, Outcome } from "./execution.js"
import { ExecutionRuntime } from "./execution.js"
import { EngineTimer } from "./engineTimer.js"
import type { CodeFault } from "./faults.js"
import { stuckExecutions, stuckFault } from "./faults.js"
import { Liveness } from "./engineLiveness.js"
import { OneShot } from "./oneShot.js"
import type { AwaitOptions, ResultError } from "./results.js"
import { defaultPollEvery, keyString, Results } from "./results.js"

/** @internal */
export interface EngineOptions {
  readonly identity?: string | undefined
  readonly claimLease?: Duration.DurationInput | undefined
  readonly resumeOnStart?: boolean | undefined
  readonly maxBatch?: number | undefined
  readonly orphanCheckInterval?: Duration.DurationInput | undefined
  readonly resultPollInterval?: Duration.DurationInput | undefined
  readonly journalRetries?: number | undefined
  readonly livenessCheckInterval?: Duration.DurationInput | undefined
}

/** @internal */
export interface Definition extends WorkflowDefinition {
  readonly codec: ExitCodec<any, any>
  readonly encodePayload: (message: any) => Either.Either<any, ParseResult.ParseIssue>
  readonly decodePayload: (json: unknown) => Either.Either<any, ParseResult.ParseIssue>
}

/** The parent link stored with a child execution. */
interface ParentLink {
  readonly workflow: string
  readonly executionId: string
  readonly signal: string
}

const liveClock = Clock.make()

/** The engine's monotonic clock, in milliseconds (the fiber's `Clock`, so TestClock drives it in tests). */
const monotonicMillis = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos / 1_000_000n))

/** The engines of this process, per journal (an inbox change is told to a live owner directly). */
const processEngines = new WeakMap<Journal, Set<Engine>>()
const enginesOf = (journal: Journal): ReadonlySet<Engine> => processEngines.get(journal) ?? new Set()

/** Engines in one process on one journal share an identity, so a new engine resumes at once. */
const identities = new WeakMap<Journal, string>()

/** A stored parent link (JSON text of `ParentLink`, or null), or why it is not one. */
const parseParent = (text: string | null): Either.Either<ParentLink | null, string> => {
  if (text === null) return Either.right(null)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return Either.left(`not JSON (${String(error)})`)
  }
  const link = json as Partial<ParentLink> | null
  return typeof link === "object" && link !== null && typeof link.workflow === "string" &&
      typeof link.executionId === "string" && typeof link.signal === "string"
    ? Either.right({ workflow: link.workflow, executionId: link.executionId, signal: link.signal })
    : Either.left(`not a parent link: ${text.slice(0, 200)}`)
}

/** @internal */
export type StartResult =
  | { readonly _tag: "Running" }
  | { readonly _tag: "Finished"; readonly result: string }

const runningStart: StartResult = { _tag: "Running" }
const runningResult = Exit.succeed(runningStart)

/** @internal */
export class Engine {
  readonly live = new Map<string, ExecutionRuntime>()
  private readonly starting = new Map<string, OneShot<void>>()
  private readonly claiming = new Set<string>()
  /** Callers awaiting results. */
  readonly results: Results
  /** Executions stopped by a journal failure that this engine takes back once the journal answers. */
  private readonly retrying = new Set<string>()
  readonly definitions: Map<string, Definition>
  readonly names: ReadonlyArray<string>
  readonly timer: EngineTimer
  private readonly liveChanged: Queue.Queue<void>
  readonly leaseMillis: number
  readonly services: EngineServices
  readonly liveness: Liveness
  private readonly renewSoon: Queue.Queue<void>

  constructor(
    readonly journal: Journal,
    readonly committer: GroupCommit.Committer,
    readonly owner: string,
    definitions: ReadonlyArray<WorkflowDefinition>,
    readonly context: Context.Context<never>,
    readonly runFork: <A, E>(
      effect: Effect.Effect<A, E, never>,
      options?: Runtime.RunForkOptions
    ) => Fiber.RuntimeFiber<A, E>,
    readonly options: EngineOptions
  ) {
    this.definitions = new Map(definitions.map((definition) => [definition.tag, {
      ...definition,
      codec: exitCodec(definition.success, definition.failure),
      encodePayload: ParseResult.encodeEither(definition.schema),
      decodePayload: ParseResult.decodeUnknownEither(definition.schema)
    }]))
    this.names = Array.from(this.definitions.keys())
    this.timer = new EngineTimer(
      Effect.suspend(() => this.retryJournal(this.journal.nextWakeAt(this.names))),
      (dueAt) => this.resumeDue(dueAt)
    )
    this.liveChanged = Effect.runSync(Queue.sliding<void>(1))
    this.leaseMillis = Duration.toMillis(options.claimLease ?? "30 seconds")
    this.results = new Results({
      journal,
      owner,
      pollEvery: defaultPollEvery(options.resultPollInterval),
      isLive: (id) => this.live.has(id),
      isRetrying: (id) => this.retrying.has(id),
      claimAndLaunch: (key) => this.claimAndLaunch(key)
    })
    this.renewSoon = Effect.runSync(Queue.sliding<void>(1))
    this.liveness = new Liveness({
      journal,
      owner,
      names: this.names,
      leaseMillis: this.leaseMillis,
      resumeOrphans: Effect.suspend(() => this.resumeOrphans),
      claimAndLaunch: (key) => this.claimAndLaunch(key),
      notifyLive: (key) => {
        const runtime = this.live.get(keyString(key))
        if (runtime === undefined) return false
        runtime.notifyInbox()
        return true
      },
      liveClaims: () => Array.from(this.live.values(), (runtime) => ({ key: runtime.key, epoch: runtime.currentEpoch })),
      stopAll: () => {
        for (const runtime of this.live.values()) runtime.notifyClaimLost()
      },
      fork: (effect) => void this.runFork(effect),
      renewNow: () => this.renewSoon.unsafeOffer(undefined)
    }, Duration.decode(options.livenessCheckInterval ?? "500 millis"))
    this.services = {
      journal,
      committer,
      owner,
      startChild: (parent, signal, childId, message) => this.startChild(parent, signal, childId, message),
      sleepUntil: (wakeAt) => this.timer.sleepUntil(wakeAt),
      fork: (effect, refs, immediate) =>
        this.runFork(effect, {
          updateRefs: (current, fiberId) =>
            FiberRefs.updateManyAs(current, {
              entries: [
                [FiberRef.currentContext, [[fiberId, refs.context]]],
                [FiberRef.currentLogAnnotations, [[fiberId, refs.logAnnotations]]],
                [FiberRef.currentScheduler, [[fiberId, refs.scheduler]]]
              ]
            }),
          immediate
        })
    }
  }

  definitionOf(tag: string): Effect.Effect<Definition, WorkflowUsageError> {
    const definition = this.definitions.get(tag)
    return definition === undefined
      ? Effect.fail(new WorkflowUsageError({ message: `The engine has no workflow for messages tagged "${tag}"` }))
      : Effect.succeed(definition)
  }

  // ---------------------------------------------------------------------------------------------
  // starting and resuming
  // ---------------------------------------------------------------------------------------------

  /** Starts an execution, or joins the one with the same id. Returns once the start is committed. */
  start(
    definition: Definition,
    key: ExecutionKey,
    message: unknown,
    parent: ParentLink | null
  ): Effect.Effect<StartResult, PayloadMismatchError | EncodeError | PayloadDecodeError | JournalError | EngineClosedError> {
    return Effect.suspend((): Effect.Effect<
      StartResult,
      PayloadMismatchError | EncodeError | PayloadDecodeError | JournalError | EngineClosedError
    > => {
      const closed = this.results.closedError
      if (closed !== undefined) return Effect.fail(closed)
      const invalid = invalidIdReason(key.executionId)
      if (invalid !== undefined) {
        return new EncodeError({
          workflow: key.workflow,
          executionId: key.executionId,
          step: "the execution id",
          reason: `the execution id cannot be stored: ${invalid}`
        })
      }
      const encoded = definition.encodePayload(message)
      if (Either.isLeft(encoded)) {
        return new EncodeError({
          workflow: key.workflow,
          executionId: key.executionId,
          step: "the start message",
          reason: ParseResult.TreeFormatter.formatIssueSync(encoded.left)
        })
      }
      const payload = JSON.stringify(encoded.right)
      return this.startEncoded(definition, key, keyString(key), message, parent, payload, payloadHash(payload))
    })
  }

  private startEncoded(
    definition: Definition,
    key: ExecutionKey,
    id: string,
    message: unknown,
    parent: ParentLink | null,
    payload: string,
    hash: string
  ): Effect.Effect<StartResult, PayloadMismatchError | PayloadDecodeError | JournalError> {
    const again = () => this.startEncoded(definition, key, id, message, parent, payload, hash)
    const inProgress = this.starting.get(id)
    if (inProgress !== undefined) return Effect.flatMap(inProgress.await, again)
    const running = this.live.get(id)
    if (running !== undefined) {
      // It is leaving this engine: once it has, a send resumes it (2024: sending again resumes).
      if (running.suspending) return Effect.flatMap(running.done.await, again)
      return running.payloadHash !== undefined && running.payloadHash !== hash
        ? new PayloadMismatchError(key)
        : runningResult
    }
    const gate = new OneShot<void>()
    this.starting.set(id, gate)
    const version = definition.version(message)
    let sentAt = 0
    return Effect.flatMap(Effect.zip(Clock.currentTimeMillis, monotonicMillis), ([now, monotonic]) =>
      Effect.flatMap(
        (sentAt = monotonic, this.committer.submit({
          _tag: "Start",
          key,
          payload,
          payloadHash: hash,
          version,
          parent: parent === null ? null : JSON.stringify(parent),
          owner: this.owner,
          claimUntil: now + this.leaseMillis,
          now
        })).await,
        (result): Effect.Effect<StartResult, PayloadMismatchError | PayloadDecodeError | JournalError> => {
          if (result._tag === "Created") {
            this.launch(definition, key, message, {
              claimSentAt: sentAt,
              epoch: result.epoch,
              inboxVersion: 0,
              cancelRequested: false,
              version,
              payloadHash: hash,
              parent,
              fresh: true
            })
            return runningResult
          }
          if (result._tag !== "Exists") {
            return new JournalError({ operation: "start", message: `unexpected ${result._tag}`, retryable: false })
          }
          const row = result.row
          if (row.payloadHash !== hash) return new PayloadMismatchError(key)
          if (isTerminal(row.status)) return Effect.succeed({ _tag: "Finished", result: row.result ?? "" } as const)
          return Effect.as(this.claimAndLaunch(key), runningStart)
        }
      )).pipe(Effect.ensuring(Effect.sync(() => {
        this.starting.delete(id)
        gate.unsafeDone(Exit.void)
      })))
  }

  /** Claims an unfinished execution and runs it here, unless another engine holds a live claim. */
  claimAndLaunch(key: ExecutionKey): Effect.Effect<boolean, JournalError | PayloadDecodeError> {
    const id = keyString(key)
    // One claim at a time per execution in this engine, and none while it runs here: this engine's own
    // claims always succeed, so two paths (orphan check, result poll, start) must not both launch it.
    const running = this.live.get(id)
    // (a closed engine runs nothing more)
    if (this.results.closedError !== undefined) return Effect.succeed(false)
    if (this.claiming.has(id) || (running !== undefined && !running.suspending)) return Effect.succeed(false)
    this.claiming.add(id)
    return Effect.gen(this, function*() {
      const definition = this.definitions.get(key.workflow)
      if (definition === undefined) return false
      const now = yield* Clock.currentTimeMillis
      const claimSentAt = yield* monotonicMillis
      const claimed = yield* this.journal.claim(key, this.owner, now, now + this.leaseMillis)
      if (claimed._tag !== "Claimed") return false
      const row = claimed.row
      if (row.formatVersion > formatVersion) {
        // written by a newer release of this library: do not guess its meaning
        const error = new PayloadDecodeError({
          workflow: key.workflow,
          executionId: key.executionId,
          reason: `journal format ${row.formatVersion} is newer than this engine's ${formatVersion}`
        })
        yield* Effect.logError("an execution was written by a newer journal format; it is left as it is", error)
        this.failWaiters(key, error)
        return yield* error
      }
      const decoded = yield* Effect.try(() => JSON.parse(row.payload)).pipe(
        Effect.flatMap((json) =>
          Either.mapLeft(definition.decodePayload(json), (issue) => ParseResult.TreeFormatter.formatIssueSync(issue))
        ),
        Effect.either
      )
      if (Either.isLeft(decoded)) {
        const error = new PayloadDecodeError({
          workflow: key.workflow,
          executionId: key.executionId,
          reason: String(decoded.left)
        })
        yield* Effect.logError("an execution's start message no longer decodes; it is left as it is", error)
        this.failWaiters(key, error)
        return yield* error
      }
      const parent = parseParent(row.parent)
      if (Either.isLeft(parent)) {
        const error = new PayloadDecodeError({
          workflow: key.workflow,
          executionId: key.executionId,
          reason: `its stored parent link is not valid: ${parent.left}`
        })
        yield* Effect.logError("an execution's stored parent link no longer decodes; it is left as it is", error)
        this.failWaiters(key, error)
        return yield* error
      }
      this.launch(definition, key, decoded.right, {
        claimSentAt,
        epoch: row.claimEpoch,
        inboxVersion: row.inboxVersion,
        cancelRequested: row.cancelRequested,
        version: row.version,
        payloadHash: row.payloadHash,
        parent: parent.right,
        fresh: false
      })
      return true
    }).pipe(Effect.ensuring(Effect.sync(() => this.claiming.delete(id))))
  }

  private launch(
    definition: Definition,
    key: ExecutionKey,
    message: unknown,
    state: {
      /** When the request that granted the claim was sent (`monotonicMillis`): its lease starts then. */
      readonly claimSentAt: number
      readonly epoch: number
      readonly inboxVersion: number
      readonly cancelRequested: boolean
      readonly version: string
      readonly payloadHash: string
      readonly parent: ParentLink | null
      readonly fresh: boolean
    }
  ) {
    const runtime = new ExecutionRuntime(this.services, {
      key,
      epoch: state.epoch,
      inboxVersion: state.inboxVersion,
      cancelRequested: state.cancelRequested,
      version: state.version,
      body: Effect.suspend(() => definition.execute(message)),
      context: this.context,
      resultCodec: definition.codec,
      leaseMillis: this.leaseMillis,
      payloadHash: state.payloadHash,
      fresh: state.fresh
    })
    const id = runtime.keyString
    this.leaseEnds.set(runtime, state.claimSentAt + this.leaseMillis - this.leaseMargin)
    this.live.set(id, runtime)
    // the renewal loop waits for this only when nothing was live
    if (this.live.size === 1) this.liveChanged.unsafeOffer(undefined)
    const left = () => {
      if (this.live.get(id) === runtime) this.live.delete(id)
      runtime.done.unsafeDone(Exit.void)
    }
    const run = Effect.onExit(
      Effect.flatMap(runtime.run, (outcome) => this.onOutcome(runtime, outcome, state.parent)),
      (exit) => Exit.isSuccess(exit) ? Effect.sync(left) : Effect.zipRight(runtime.stopBody, Effect.sync(left))
    )
    // The execution's log annotations, set on its fiber (cheaper than `Effect.annotateLogs` around it).
    this.runFork(run, {
      updateRefs: (refs, fiberId) =>
        FiberRefs.updateAs(refs, {
          fiberId,
          fiberRef: FiberRef.currentLogAnnotations,
          value: HashMap.set(
            HashMap.set(FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations), "workflow", key.workflow as unknown),
            "executionId",
            key.executionId
          )
        })
    })
  }

  private onOutcome(runtime: ExecutionRuntime, outcome: Outcome, parent: ParentLink | null): Effect.Effect<void> {
    const id = runtime.keyString
    if (outcome._tag === "Completed" && parent === null) {
      // the common case, without an effect
      if (this.live.get(id) === runtime) this.live.delete(id)
      this.results.succeed(id, outcome.result)
      return Effect.void
    }
    return Effect.gen(this, function*() {
      if (this.live.get(id) === runtime) this.live.delete(id)
      switch (outcome._tag) {
        case "Completed": {
          this.results.succeed(id, outcome.result)
          if (parent !== null) {
            yield* this.signalKey(
              { workflow: parent.workflow, executionId: parent.executionId },
              parent.signal,
              outcome.result
            ).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not deliver a child's result to its parent", cause)))
          }
          return
        }
        case "Suspended": {
          if (outcome.wakeAt !== null) this.arm(outcome.wakeAt)
          this.results.release(id)
          return
        }
        case "Stuck": {
          yield* this.onStuck(runtime.key, outcome.fault)
          return
        }
        case "Stopped": {
          if (outcome.error._tag === "JournalError") {
            const error = outcome.error
            yield* Effect.logWarning("an execution stopped: the journal failed; it is retried", error)
            // A write the journal refuses for good (disk full, a value it cannot store) fails the callers
            // with the typed error (docs/engine.md) instead of leaving them waiting on a retry that may
            // never succeed; the execution itself is still taken back below.
            if (!error.retryable) this.failWaiters(runtime.key, error)
            else this.results.release(id)
            // Its claim is still this engine's: take it back once the journal answers again
            // (exponential backoff on the live clock, up to a minute between tries). Meanwhile a caller's
            // poll does not re-launch it (see `pollResult`).
            const key = runtime.key
            this.retrying.add(id)
            this.runFork(
              Effect.withClock(
                Effect.retry(
                  Effect.delay(Effect.suspend(() => {
                    this.retrying.delete(id)
                    return this.claimAndLaunch(key)
                  }), "1 second"),
                  Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("1 minute")))
                ),
                liveClock
              ).pipe(Effect.ignore)
            )
            return
          }
          this.results.release(id)
          return
        }
      }
    })
  }

  /**
   * The execution cannot go on with this code: it is suspended as stuck (see `faults.ts`); its callers
   * learn why, and the fault is logged and counted. It is retried by an engine that starts (other code) or
   * by `engine.resume(id)`.
   */
  private onStuck(key: ExecutionKey, fault: CodeFault): Effect.Effect<void> {
    this.results.fail(keyString(key), fault)
    return Effect.zipRight(
      Metric.increment(Metric.tagged(stuckExecutions, "workflow", key.workflow)),
      Effect.logError(
        "an execution is stuck: its code cannot carry it on; deploy code that can (roll back, or branch with " +
          "Workflow.patched), then it is retried when an engine starts or on engine.resume",
        fault
      ).pipe(Effect.annotateLogs(fault._tag === "NonDeterminismError"
        ? { expected: fault.expected, actual: fault.actual }
        : {}))
    )
  }

  private failWaiters(key: ExecutionKey, error: JournalError | PayloadDecodeError) {
    this.results.fail(keyString(key), error)
  }

  /**
   * Starts (or joins) a parent's child. Transient journal errors are retried here (a short outage); a
   * fault that remains is the parent's to handle (it stops or sticks, never fails).
   */
  private startChild(
    parent: ExecutionKey,
    signal: string,
    childId: string,
    message: any
  ): Effect.Effect<
    { readonly result: string | undefined },
    JournalError | PayloadMismatchError | EncodeError | PayloadDecodeError | WorkflowUsageError | EngineClosedError
  > {
    return Effect.gen(this, function*() {
      const definition = yield* this.definitionOf(message?._tag)
      const key = { workflow: definition.tag, executionId: childId }
      const started = yield* this.start(definition, key, message, {
        workflow: parent.workflow,
        executionId: parent.executionId,
        signal
      })
      return { result: started._tag === "Finished" ? started.result : undefined }
    }).pipe(
      Effect.retry({
        schedule: Schedule.exponential("10 millis").pipe(
          Schedule.intersect(Schedule.recurs(this.options.journalRetries ?? 8))
        ),
        while: (error) => error instanceof JournalError && error.retryable
      }),
      Effect.withClock(liveClock)
    )
  }

  // ---------------------------------------------------------------------------------------------
  // results
  // ---------------------------------------------------------------------------------------------

  /** Awaits an execution's encoded result (see `Results`). */
  awaitResult(key: ExecutionKey, options?: AwaitOptions): Effect.Effect<string, ResultError> {
    return this.results.await(key, options)
  }

  /** Reads a finished execution's result, if it is finished. */
  getRow(key: ExecutionKey) {
    return this.journal.get(key)
  }

  /** Finds an execution of one of the engine's workflows by id. */
  find(executionId: string): Effect.Effect<ExecutionRow, ExecutionNotFoundError | JournalError> {
    return Effect.gen(this, function*() {
      for (const workflow of this.names) {
        const row = yield* this.journal.get({ workflow, executionId })
        if (Option.isSome(row)) return row.value
      }
      return yield* new ExecutionNotFoundError({ executionId })
    })
  }

  decodeResult(workflow: string, json: string) {
    const definition = this.definitions.get(workflow)!
    return definition.codec.decode(json)
  }

  // ---------------------------------------------------------------------------------------------
  // signals, cancellation, resume
  // ---------------------------------------------------------------------------------------------

  /** Stores a signal in an execution's inbox and wakes or notifies the execution. */
  signalKey(
    key: ExecutionKey,
    name: string,
    value: string
  ): Effect.Effect<{ readonly stored: string; readonly row: ExecutionRow }, ExecutionNotFoundError | JournalError> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      const result = yield* this.journal.signal(key, name, value, now)
      if (result === undefined) return yield* new ExecutionNotFoundError({ executionId: key.executionId })
      yield* this.wake(result.row, (runtime) => runtime.deliverSignal(name, result.stored, result.row.inboxVersion))
      return result
    })
  }

  /**
   * After an inbox change (which made a suspended execution runnable): one running here is told; one
   * held by another live engine is left to it (told directly when that engine is in this process, through
   * the journal otherwise: NOTIFY on PostgreSQL, the data_version poll on SQLite); a runnable one is
   * claimed and resumed here, unless other live engines run its workflow: then this engine only passes
   * the change through and keeps no claim it might not run (a CLI, a webhook handler: issue 9 #9).
   */
  wake(row: ExecutionRow, notify: (runtime: ExecutionRuntime) => void): Effect.Effect<void, JournalError> {
    return Effect.catchTag(Effect.gen(this, function*() {
      if (isTerminal(row.status)) return
      const key = { workflow: row.workflow, executionId: row.executionId }
      const id = keyString(key)
      // (a suspended execution's runtime, if still here, is leaving: it no longer hears notifications)
      for (const engine of row.status === "suspended" ? [] : [this, ...enginesOf(this.journal)]) {
        const runtime = engine.live.get(id)
        if (runtime !== undefined) {
          notify(runtime)
          return
        }
      }
      const now = yield* Clock.currentTimeMillis
      const claimable = row.status === "suspended" || row.claimOwner === null || row.claimOwner === this.owner ||
        (row.claimUntil ?? 0) < now
      if (!claimable) {
        for (const engine of enginesOf(this.journal)) {
          if (engine !== this && engine.owner === row.claimOwner) engine.liveness.onChange(key, id)
        }
        return
      }
      if (yield* this.leaveToOthers(key, id)) return
      yield* this.claimAndLaunch(key)
    }), "PayloadDecodeError", () => Effect.void) // logged where it was found; the input stays stored
  }

  /** Whether other live engines run this workflow: then this one leaves a runnable execution to them. */
  private leaveToOthers(key: ExecutionKey, id: string): Effect.Effect<boolean> {
    const registration = this.liveness.registration
    const otherLiveEngines = this.journal.otherLiveEngines
    if (registration === undefined || otherLiveEngines === undefined) return Effect.succeed(false)
    return Effect.map(Effect.either(otherLiveEngines(registration, key.workflow)), (others) => {
      if (Either.isLeft(others) || others.right === 0) return false
      this.liveness.passThrough(id)
      return true
    })
  }

  cancel(executionId: string): Effect.Effect<"cancelled" | "already-finished", ExecutionNotFoundError | JournalError> {
    return Effect.gen(this, function*() {
      const found = yield* this.find(executionId)
      const now = yield* Clock.currentTimeMillis
      const row = yield* this.journal.requestCancel(found, now)
      if (row === undefined) return yield* new ExecutionNotFoundError({ executionId })
      if (isTerminal(row.status)) return "already-finished" as const
      yield* this.wake(row, (runtime) => runtime.notifyCancel())
      return "cancelled" as const
    })
  }

  /**
   * Retries every stuck execution of the engine's workflows once (an engine starts: its code may carry them
   * on now). Runs in the background; an execution still stuck is logged again.
   */
  readonly retryStuck: Effect.Effect<void, JournalError> = Effect.gen(this, function*() {
    let after: ExecutionKey | undefined = undefined
    while (true) {
      const rows: ReadonlyArray<ExecutionRow> = yield* this.journal.list({
        workflows: this.names,
        status: "suspended",
        after,
        limit: 500
      })
      for (const row of rows) {
        if (stuckFault(row.suspendedOn) === undefined) continue
        const now = yield* Clock.currentTimeMillis
        const resumed = yield* this.journal.resume(row, now)
        if (resumed !== undefined) yield* this.wake(resumed, () => {})
      }
      if (rows.length < 500) return
      after = rows[rows.length - 1]
    }
  })

  resume(executionId: string): Effect.Effect<void, ExecutionNotFoundError | JournalError> {
    return Effect.gen(this, function*() {
      const found = yield* this.find(executionId)
      const now = yield* Clock.currentTimeMillis
      const row = yield* this.journal.resume(found, now)
      if (row === undefined) return yield* new ExecutionNotFoundError({ executionId })
      yield* this.wake(row, () => {})
    })
  }

  // ---------------------------------------------------------------------------------------------
  // background loops
  // ---------------------------------------------------------------------------------------------

  /** Arms the engine's timer for `wakeAt` when it is earlier than the armed deadline. */
  arm(wakeAt: number) {
    this.timer.arm(wakeAt)
  }

  /** Resumes the suspended executions whose deadline is at or before `dueAt`, in deadline order. */
  private resumeDue(dueAt: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const due = yield* this.retryJournal(this.journal.dueTimers(this.names, dueAt, 1000))
      for (const key of due) {
        yield* Effect.catchAll(this.claimAndLaunch(key), (error) => Effect.logWarning("could not resume", error))
      }
    })
  }

  /**
   * Where each live execution's lease ends by this engine's own clock: the send time of the request that
   * granted or last renewed its claim, plus the lease, minus `leaseMargin` (DESIGN.md section 8).
   */
  private readonly leaseEnds = new WeakMap<ExecutionRuntime, number>()

  /** Stop work this long before the lease ends: a tenth of the lease, at least 100 ms, at most 5 s. */
  get leaseMargin(): number {
    return Math.min(5_000, Math.max(100, Math.floor(this.leaseMillis / 10)))
  }

  /**
   * After an execution stopped at its lease's end: once its claim has ended in the journal too (another
   * margin later, on the engine's clock), claims it again, unless another engine took it over meanwhile
   * (then the claim fails and nothing happens); retries while the journal fails.
   */
  private takeBackAfterLeaseEnd(runtime: ExecutionRuntime) {
    // (only the retry delays are on the live clock: the claim keeps the engine's clock)
    const attempt = (delay: number): Effect.Effect<void> =>
      Effect.catchAll(Effect.asVoid(this.claimAndLaunch(runtime.key)), (error) =>
        error._tag === "PayloadDecodeError"
          ? Effect.void
          : Effect.zipRight(
            Effect.withClock(Effect.sleep(delay), liveClock),
            Effect.suspend(() => attempt(Math.min(delay * 2, 30_000)))
          ))
    this.runFork(Effect.zipRight(
      Effect.zipRight(runtime.done.await, Effect.sleep(this.leaseMargin * 2)),
      attempt(100)
    ))
  }

  /**
   * Renews the claims of live executions every lease/3, only while there are any. An execution whose
   * lease ends (by this engine's monotonic clock, measured from the send of its last successful renewal)
   * before a renewal succeeds is stopped: another engine may take it over once the claim expires, and
   * two engines must never both run it (issue 9 #11).
   */
  readonly renewLoop: Effect.Effect<never> = Effect.gen(this, function*() {
    const every = Math.max(1, Math.floor(this.leaseMillis / 3))
    let renewAt = (yield* monotonicMillis) + every
    while (true) {
      if (this.live.size === 0) {
        yield* Queue.take(this.liveChanged)
        renewAt = (yield* monotonicMillis) + every
        continue
      }
      let earliest = renewAt
      for (const runtime of this.live.values()) {
        const end = this.leaseEnds.get(runtime)
        if (end !== undefined && end < earliest) earliest = end
      }
      const wait = earliest - (yield* monotonicMillis)
      if (wait > 0) {
        // another process changed something (SQLite): renew now, which reads the inbox versions
        const soon = yield* Effect.raceFirst(
          Effect.as(Effect.sleep(wait), false),
          Effect.as(Queue.take(this.renewSoon), true)
        )
        if (soon) renewAt = yield* monotonicMillis
      }
      const now = yield* monotonicMillis
      const ending = Array.from(this.live.values()).some((runtime) => (this.leaseEnds.get(runtime) ?? Infinity) <= now)
      // A lease about to end gets one last renewal, answered within the margin (on the live clock: the
      // time a database takes to answer is real time) before its execution is stopped.
      if (now >= renewAt || ending) {
        renewAt = now + every
        yield* this.renewLive(ending)
      }
      const after = yield* monotonicMillis
      for (const runtime of this.live.values()) {
        const end = this.leaseEnds.get(runtime)
        if (end !== undefined && end <= after && !runtime.suspending) {
          this.leaseEnds.delete(runtime)
          yield* Effect.logWarning("an execution's claim could not be renewed before its lease ended; it stops here")
            .pipe(Effect.annotateLogs({ workflow: runtime.key.workflow, executionId: runtime.key.executionId }))
          runtime.notifyClaimLost()
          this.takeBackAfterLeaseEnd(runtime)
        }
      }
    }
  })

  /** Renews the claims of the live executions; `bounded`: give up after the lease margin (live clock). */
  private renewLive(bounded: boolean): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const runtimes = Array.from(this.live.values()).filter((runtime) => this.leaseEnds.has(runtime))
      if (runtimes.length === 0) return
      const sentAt = yield* monotonicMillis
      const wallNow = yield* Clock.currentTimeMillis
      const renew = this.journal.renew(
        this.owner,
        runtimes.map((runtime) => ({ key: runtime.key, epoch: runtime.currentEpoch })),
        wallNow + this.leaseMillis
      )
      const rows = yield* Effect.either(
        bounded
          ? Effect.timeoutFail(renew, {
            duration: this.leaseMargin,
            onTimeout: () =>
              new JournalError({ operation: "renew", message: "no answer within the lease margin", retryable: true })
          }).pipe(Effect.withClock(liveClock))
          : renew
      )
      if (Either.isLeft(rows)) {
        yield* Effect.logWarning("could not renew claims", rows.left)
        return
      }
      rows.right.forEach((row, i) => {
        const runtime = runtimes[i]!
        if (row === undefined) runtime.notifyClaimLost()
        else {
          if (this.leaseEnds.has(runtime)) this.leaseEnds.set(runtime, sentAt + this.leaseMillis - this.leaseMargin)
          if (row.inboxVersion > runtime.currentInboxVersion) runtime.notifyInbox()
        }
      })
    })
  }

  /** Resumes unfinished executions nobody runs (at start, and every `orphanCheckInterval` if set). */
  readonly resumeOrphans: Effect.Effect<number, JournalError> = Effect.gen(this, function*() {
    let resumed = 0
    const page = 500
    while (true) {
      const now = yield* Clock.currentTimeMillis
      // Executions this engine could not read stay claimed by it: skip them (they are logged once), or
      // every page would be the same undecodable ones and the start would never end.
      const keys = yield* this.journal.resumable(this.names, this.owner, now, page + this.unreadable.size)
      const fresh = keys.filter((key) => !this.live.has(keyString(key)) && !this.unreadable.has(keyString(key)))
      if (fresh.length === 0) break
      for (const key of fresh.slice(0, page)) {
        const launched = yield* Effect.catchTag(this.claimAndLaunch(key), "PayloadDecodeError", () =>
          Effect.sync(() => {
            this.unreadable.add(keyString(key))
            return false
          }))
        if (launched) resumed++
      }
      if (keys.length < page + this.unreadable.size) break
    }
    // Suspended executions whose inbox changed after they suspended: the process that stored the signal
    // (or cancellation) died before waking them (issue 9 #2).
    if (this.journal.staleSuspensions !== undefined) {
      const stale = yield* this.journal.staleSuspensions(this.names, page)
      for (const key of stale) {
        if (this.live.has(keyString(key)) || this.unreadable.has(keyString(key))) continue
        const launched = yield* Effect.catchTag(this.claimAndLaunch(key), "PayloadDecodeError", () =>
          Effect.sync(() => {
            this.unreadable.add(keyString(key))
            return false
          }))
        if (launched) resumed++
      }
    }
    return resumed
  })

  /** Executions this engine found it cannot decode (left as they are; logged when found). */
  private readonly unreadable = new Set<string>()

  private retryJournal<A>(effect: Effect.Effect<A, JournalError>): Effect.Effect<A> {
    const retries = this.options.journalRetries ?? 8
    const loop = (attempt: number): Effect.Effect<A> =>
      Effect.catchAll(effect, (error) =>
        attempt >= retries
          ? Effect.zipRight(
            Effect.logError("the journal keeps failing", error),
            Effect.zipRight(Effect.withClock(Effect.sleep(Duration.seconds(5)), liveClock), loop(0))
          )
          : Effect.zipRight(Effect.withClock(Effect.sleep(Duration.millis(10 * 2 ** attempt)), liveClock), loop(attempt + 1)))
    return loop(0)
  }
}

/** @internal */
export const make = (
  journal: Journal,
  definitions: ReadonlyArray<WorkflowDefinition>,
  context: Context.Context<never>,
  options: EngineOptions
): Effect.Effect<Engine, JournalError, Scope.Scope> =>
  Effect.gen(function*() {
    let owner = options.identity ?? identities.get(journal)
    if (owner === undefined) {
      const n1 = yield* Random.nextIntBetween(0, 2 ** 30)
      const n2 = yield* Random.nextIntBetween(0, 2 ** 30)
      owner = `engine-${n1.toString(36)}${n2.toString(36)}`
      identities.set(journal, owner)
    }
    // A graceful shutdown gives up the claims of the executions that ran here once they have stopped and
    // the committer is closed (this finalizer runs last; the one registered after the fibers' set notes
    // the claims before they stop), so nothing of theirs is written after the release.
    let claimsAtClose: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }> = []
    let liveness: Liveness | undefined
    yield* Effect.addFinalizer(() => liveness === undefined ? Effect.void : liveness.release(claimsAtClose))
    const committer = yield* GroupCommit.make(journal, {
      maxBatch: options.maxBatch ?? 256,
      retries: options.journalRetries ?? 8,
      retryBase: "10 millis"
    })
    const fibers = yield* FiberSet.make()
    const runFork = yield* FiberSet.runtime(fibers)<never>()
    const engine = new Engine(journal, committer, owner, definitions, context, runFork, options)
    liveness = engine.liveness
    const siblings = processEngines.get(journal) ?? new Set<Engine>()
    processEngines.set(journal, siblings)
    siblings.add(engine)
    yield* Effect.addFinalizer(() => Effect.sync(() => siblings.delete(engine)))
    yield* Effect.addFinalizer(() => Effect.sync(() => claimsAtClose = engine.liveness.host.liveClaims()))
    yield* engine.liveness.register(keyString)
    yield* Effect.forkScoped(engine.timer.loop)
    yield* Effect.forkScoped(engine.renewLoop)
    // Last registered, so first run when the scope closes: callers still waiting are answered.
    yield* Effect.addFinalizer(() => Effect.sync(() => engine.results.close(new EngineClosedError({ identity: owner! }))))
    if (options.resumeOnStart !== false) {
      yield* engine.resumeOrphans
      yield* Effect.forkScoped(
        Effect.catchAll(engine.retryStuck, (error) => Effect.logWarning("could not retry stuck executions", error))
      )
    }
    yield* Effect.forkScoped(engine.liveness.watch)
    if (options.orphanCheckInterval !== undefined) {
      const every = options.orphanCheckInterval
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
        Effect.sleep(every),
        Effect.catchAll(engine.resumeOrphans, (error) => Effect.as(Effect.logWarning("orphan check failed", error), 0)).pipe(
          // another engine may have suspended executions with earlier deadlines and died: look again
          Effect.tap(() => Effect.sync(() => engine.arm(Number.NEGATIVE_INFINITY)))
        )
      )))
    }
    return engine
  })

/** @internal */
export const cancelledError = (key: ExecutionKey) => new WorkflowCancelledError(key)

/** @internal */
export const primaryKeyOf = (message: unknown): string => PrimaryKey.value(message as PrimaryKey.PrimaryKey)

/** @internal */
export const isInterruptOnly = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
