/**
 * The engine: starts, joins, resumes and wakes executions; arms one timer for the earliest deadline;
 * renews the claims of live executions; delivers signals and cancellations. This module holds the
 * `Engine`'s state and its construction; the work is in `engineLaunch.ts` (start, claim, launch, outcomes),
 * `engineSignals.ts` (signal, cancel, resume, wake) and `engineLoops.ts` (timer scan, renewal and lease
 * watchdog, orphan scan).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as FiberSet from "effect/FiberSet"
import * as ParseResult from "effect/ParseResult"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import type * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { ExecutionKey, ExecutionRow, Journal, JournalError, WriteResult } from "../DurableExecutionJournal.js"
import type { WorkflowDefinition } from "../Workflow.js"
import type {
  EncodeError,
  ExecutionNotFoundError,
  PayloadDecodeError,
  PayloadMismatchError
} from "../WorkflowError.js"
import { EngineClosedError, WorkflowCancelledError, WorkflowUsageError } from "../WorkflowError.js"
import { exitCodec } from "./codec.js"
import * as Launch from "./engineLaunch.js"
import { Liveness } from "./engineLiveness.js"
import * as Ownership from "./engineOwnership.js"
import * as Loops from "./engineLoops.js"
import type { Definition, EngineOptions, ParentLink, StartResult } from "./engineShared.js"
import { forkDetachable, forkSupervised, processEngines } from "./engineShared.js"
import * as Signals from "./engineSignals.js"
import { EngineTimer } from "./engineTimer.js"
import type { EngineServices, ExecutionRuntime } from "./execution.js"
import * as GroupCommit from "./groupCommit.js"
import { liveClock } from "./liveClock.js"
import { claimOrRetryLater } from "./lockedClaims.js"
import type { OneShot } from "./oneShot.js"
import type { AwaitOptions, ResultError } from "./results.js"
import { defaultPollEvery, keyString, Results } from "./results.js"

export type { Definition, EngineOptions, StartResult } from "./engineShared.js"

/** Engines in one process on one journal share an identity, so a new engine resumes at once. */
const identities = new WeakMap<Journal, string>()

/** @internal */
export class Engine {
  readonly live = new Map<string, ExecutionRuntime>()
  /** Starts in progress here, per execution (a second start of the same id waits for the first). */
  readonly starting = new Map<string, OneShot<void>>()
  /** Executions being claimed here (one claim at a time per execution). */
  readonly claiming = new Set<string>()
  /** Runtimes launched before their Start was committed, with that Start's result (see `Launch.start`). */
  readonly earlyStarts = new WeakMap<ExecutionRuntime, OneShot<WriteResult, JournalError>>()
  /** Callers awaiting results. */
  readonly results: Results
  /** Executions stopped by a journal failure that this engine takes back once the journal answers. */
  readonly retrying = new Set<string>()
  /** Executions whose claim met a row locked by another transaction, claimed again in the background. */
  readonly lockedClaims = new Set<string>()
  /** Whether `lockedClaims` reached its bound (logged once until it empties again). */
  lockedClaimsFull = false
  readonly definitions: Map<string, Definition>
  readonly names: ReadonlyArray<string>
  readonly timer: EngineTimer
  /** Offered when the first execution goes live (the renewal loop sleeps while none is). */
  readonly liveChanged: Queue.Queue<void>
  readonly leaseMillis: number
  readonly services: EngineServices
  readonly liveness: Liveness
  /** Who decides which engine runs an execution: claims between engines, or the cluster's shard owner. */
  readonly ownership: Ownership.Ownership
  /** Offered when another process changed something: the renewal loop renews (and reads inboxes) now. */
  readonly renewSoon: Queue.Queue<void>
  /**
   * Where each live execution's lease ends by this engine's own clock: the send time of the request that
   * granted or last renewed its claim, plus the lease, minus `leaseMargin` (DESIGN.md section 8).
   */
  readonly leaseEnds = new WeakMap<ExecutionRuntime, number>()
  /** Executions this engine found it cannot decode (left as they are; logged when found). */
  readonly unreadable = new Set<string>()

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
      Effect.suspend(() => Loops.retryJournal(this, this.journal.nextWakeAt(this.names))),
      (dueAt) => Loops.resumeDue(this, dueAt)
    )
    this.liveChanged = Effect.runSync(Queue.sliding<void>(1))
    this.leaseMillis = Duration.toMillis(options.claimLease ?? "30 seconds")
    this.ownership = options.ownership ?? Ownership.claims
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
      claimAndLaunch: (key) => claimOrRetryLater(this, key),
      notifyLive: (key) => {
        const runtime = this.live.get(keyString(key))
        // (a suspending runtime is leaving and no longer reads its inbox: the change is a wake-up, a claim)
        if (runtime === undefined || runtime.suspending) return false
        runtime.notifyInbox()
        return true
      },
      liveClaims: () => Array.from(this.live.values(), (runtime) => ({ key: runtime.key, epoch: runtime.currentEpoch })),
      stopAll: () => this.ownership.registrationLost(this),
      fork: (effect) => void this.runFork(effect),
      renewNow: () => this.renewSoon.unsafeOffer(undefined)
    }, Duration.decode(options.livenessCheckInterval ?? "500 millis"))
    this.services = {
      journal,
      committer,
      owner,
      startChild: (parent, signal, childId, message) => Launch.startChild(this, parent, signal, childId, message),
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

  /** Stop work this long before the lease ends: a tenth of the lease, at least 100 ms, at most 5 s. */
  get leaseMargin(): number {
    return Math.min(5_000, Math.max(100, Math.floor(this.leaseMillis / 10)))
  }

  // ---------------------------------------------------------------------------------------------
  // starting and resuming (engineLaunch.ts)
  // ---------------------------------------------------------------------------------------------

  /** Starts an execution, or joins the one with the same id. Returns once the start is committed. */
  start(
    definition: Definition,
    key: ExecutionKey,
    message: unknown,
    parent: ParentLink | null
  ): Effect.Effect<StartResult, PayloadMismatchError | EncodeError | PayloadDecodeError | JournalError | EngineClosedError> {
    return Launch.start(this, definition, key, message, parent)
  }

  /** Claims an unfinished execution and runs it here, unless another engine holds a live claim. */
  claimAndLaunch(key: ExecutionKey): Effect.Effect<boolean, JournalError | PayloadDecodeError> {
    return Launch.claimAndLaunch(this, key)
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
    return Signals.find(this, executionId)
  }

  decodeResult(workflow: string, json: string) {
    const definition = this.definitions.get(workflow)!
    return definition.codec.decode(json)
  }

  // ---------------------------------------------------------------------------------------------
  // signals, cancellation, resume (engineSignals.ts)
  // ---------------------------------------------------------------------------------------------

  /** Stores a signal in an execution's inbox and wakes or notifies the execution. */
  signalKey(
    key: ExecutionKey,
    name: string,
    value: string
  ): Effect.Effect<{ readonly stored: string; readonly row: ExecutionRow }, ExecutionNotFoundError | JournalError> {
    return Signals.signalKey(this, key, name, value)
  }

  /** After an inbox change: tells the execution's runtime, or claims and resumes it (see `Signals.wake`). */
  wake(row: ExecutionRow, notify: (runtime: ExecutionRuntime) => void): Effect.Effect<void, JournalError> {
    return Signals.wake(this, row, notify)
  }

  cancel(executionId: string): Effect.Effect<"cancelled" | "already-finished", ExecutionNotFoundError | JournalError> {
    return Signals.cancel(this, executionId)
  }

  /**
   * Retries every stuck execution of the engine's workflows once (an engine starts: its code may carry them
   * on now). Runs in the background; an execution still stuck is logged again.
   */
  readonly retryStuck: Effect.Effect<void, JournalError> = Effect.suspend(() => Signals.retryStuck(this))

  resume(executionId: string): Effect.Effect<void, ExecutionNotFoundError | JournalError> {
    return Signals.resume(this, executionId)
  }

  // ---------------------------------------------------------------------------------------------
  // background loops (engineLoops.ts)
  // ---------------------------------------------------------------------------------------------

  /** Arms the engine's timer for `wakeAt` when it is earlier than the armed deadline. */
  arm(wakeAt: number) {
    this.timer.arm(wakeAt)
  }

  /** Renews the claims of live executions every lease/3 and stops those whose lease ends (issue 9 #11). */
  readonly renewLoop: Effect.Effect<never> = Effect.suspend(() => Loops.renewLoop(this))

  /** Resumes unfinished executions nobody runs (at start, and every `orphanCheckInterval` if set). */
  readonly resumeOrphans: Effect.Effect<number, JournalError> = Effect.suspend(() => Loops.resumeOrphans(this))
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
    yield* forkSupervised("timer", engine.timer.loop)
    yield* forkSupervised("claim renewal", engine.renewLoop)
    // Last registered, so first run when the scope closes: callers still waiting are answered, then (while
    // claims are still renewed and the committer runs) a graceful shutdown lets the activities in flight
    // finish, within `shutdownGracePeriod`.
    if (options.closesItself !== false) yield* Effect.addFinalizer(() => closeGracefully(engine))
    if (options.resumeOnStart !== false) {
      yield* engine.resumeOrphans
      yield* forkDetachable(
        "retry of stuck executions",
        Effect.catchAll(engine.retryStuck, (error) => Effect.logWarning("could not retry stuck executions", error))
      )
    }
    const watchOthers = engine.ownership.watchOthers(engine)
    if (watchOthers !== undefined) yield* forkSupervised("liveness watch", watchOthers)
    if (options.orphanCheckInterval !== undefined) {
      const every = options.orphanCheckInterval
      yield* forkSupervised("orphan check", Effect.forever(Effect.zipRight(
        Effect.sleep(every),
        Effect.catchAll(engine.resumeOrphans, (error) => Effect.as(Effect.logWarning("orphan check failed", error), 0)).pipe(
          // another engine may have suspended executions with earlier deadlines and died: look again
          Effect.tap(() => Effect.sync(() => engine.arm(Number.NEGATIVE_INFINITY)))
        )
      )))
    }
    return engine
  })

/**
 * The engine's scope closes: the callers still waiting are answered and no execution starts here any
 * more; then, with a `shutdownGracePeriod`, the activities in flight finish (`drainLive`).
 *
 * @internal
 */
export const closeGracefully = (engine: Engine): Effect.Effect<void> =>
  Effect.suspend(() => {
    engine.results.close(new EngineClosedError({ identity: engine.owner }))
    const grace = Duration.toMillis(Duration.decode(engine.options.shutdownGracePeriod ?? 0))
    return grace > 0 ? drainLive(engine, grace) : Effect.void
  })

/**
 * A graceful shutdown's grace: no activity starts any more in the live executions, and the engine waits
 * (live clock, at most `graceMillis`) until none runs and their results are committed. What still runs
 * after it is stopped by the engine's scope, as without a grace period.
 */
const drainLive = (engine: Engine, graceMillis: number): Effect.Effect<void> =>
  drainWithin(Array.from(engine.live.values()), graceMillis, {
    starting: "the engine stops: letting the activities of",
    period: "the shutdown's grace period",
    after: "where the execution resumes"
  })

/**
 * Drains `runtimes` (see `ExecutionRuntime.drain`) for at most `graceMillis` (live clock; interruptible,
 * though run by a finalizer or a shard stop hook, so the timeout, or the hook's own bound, can end the wait),
 * logging `words.starting` when activities run and a warning when the grace ends first. The caller stops
 * what still runs afterwards. Used by a shutdown and by the cluster engine's hand-off of shards.
 *
 * @internal
 */
export const drainWithin = (
  runtimes: ReadonlyArray<ExecutionRuntime>,
  graceMillis: number,
  words: { readonly starting: string; readonly period: string; readonly after: string }
): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (runtimes.length === 0) return Effect.void
    const busy = runtimes.filter((runtime) => runtime.busy).length
    const grace = Duration.format(Duration.millis(graceMillis))
    // (an idle execution's drain only commits its queued writes: a result just recorded)
    const announce = busy === 0
      ? Effect.void
      : Effect.logInfo(`${words.starting} ${busy} executions finish (at most ${grace})`)
    // (the executions whose drain has not ended: a journal that does not commit their results keeps them)
    const pending = new Set(runtimes)
    const drains = runtimes.map((runtime) => Effect.tap(runtime.drain, () => Effect.sync(() => pending.delete(runtime))))
    return announce.pipe(
      Effect.zipRight(Effect.withClock(
        Effect.timeout(
          Effect.interruptible(Effect.all(drains, { concurrency: "unbounded", discard: true })),
          Duration.millis(graceMillis)
        ),
        liveClock
      )),
      Effect.catchTag("TimeoutException", () => {
        const still = runtimes.filter((runtime) => runtime.busy).length
        const uncommitted = Array.from(pending).filter((runtime) => !runtime.busy).length
        return Effect.logWarning(
          still > 0
            ? `${still} executions still ran an activity after ${words.period} (${grace}): it is ` +
              `interrupted and runs again ${words.after}`
            : `the results of ${uncommitted} executions were not committed within ${words.period} ` +
              `(${grace}): their steps run again ${words.after}`
        )
      })
    )
  })

/** @internal */
export const cancelledError = (key: ExecutionKey) => new WorkflowCancelledError(key)

/** @internal */
export const primaryKeyOf = (message: unknown): string => PrimaryKey.value(message as PrimaryKey.PrimaryKey)

/** @internal */
export const isInterruptOnly = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
