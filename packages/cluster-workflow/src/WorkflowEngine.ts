/**
 * The workflow engine: runs executions of workflows on a journal.
 *
 * `makeScoped(workflow)` is the 2024 entry point (`send`, `sendDiscard`); the engine also offers
 * `start`, `execute`, `result`, `poll`, `status`, `list`, `cancel`, `signal` and `resume`, which
 * return engine faults as typed errors. See docs/engine.md.
 *
 * @since 0.1.0
 */
import type { Message } from "@effect-cluster/cluster"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PrimaryKey from "effect/PrimaryKey"
import type * as Scope from "effect/Scope"
import type { ExecutionKey, ExecutionRow, ExecutionStatus } from "./DurableExecutionJournal.js"
import type { JournalError } from "./DurableExecutionJournal.js"
import { DurableExecutionJournal, isTerminal } from "./DurableExecutionJournal.js"
import type { DurableDeferred } from "./DurableDeferred.js"
import * as internal from "./internal/engine.js"
import { EngineProvider } from "./internal/engineProvider.js"
import { stuckExecutions as stuckExecutionsMetric, stuckFault } from "./internal/faults.js"
import type { AwaitOptions } from "./internal/results.js"
import { rideOutJournal } from "./internal/results.js"
import type { Workflow } from "./Workflow.js"
import type {
  ExecutionNotFoundError,
  NonDeterminismError,
  PayloadDecodeError,
  PayloadMismatchError,
  WorkflowEngineError,
  WorkflowUsageError
} from "./WorkflowError.js"
import {
  EncodeError,
  isWorkflowEngineError,
  JournalDecodeError,
  ResultTimeoutError,
  WorkflowCancelledError
} from "./WorkflowError.js"

/**
 * Options of `make`.
 *
 * @since 0.1.0
 * @category models
 */
export interface EngineOptions {
  /**
   * The engine's identity in claims. An engine restarted with the same identity takes its executions
   * back at once instead of waiting for their claims to expire: use a stable name per process (a pod
   * name). Default: one random identity per journal instance in this process. Two live processes with
   * the same identity take executions from each other; epoch fencing keeps every write safe, but they
   * waste work: do not share identities on purpose.
   */
  readonly identity?: string
  /** How long a claim lasts without renewal (renewed every third of it). Default 30 seconds. */
  readonly claimLease?: Duration.DurationInput
  /** Resume unfinished executions of these workflows when the engine starts. Default true. */
  readonly resumeOnStart?: boolean
  /** Most journal writes committed together (group commit). Default 256. */
  readonly maxBatch?: number
  /**
   * With several engines on one journal: how often to look for executions whose engine died (claim
   * expired) and resume them. Default: never (one process; a restarted engine resumes its own at start).
   */
  readonly orphanCheckInterval?: Duration.DurationInput
  /** Longest pause between reads of the journal while awaiting a result run by another engine. Default 1 s. */
  readonly resultPollInterval?: Duration.DurationInput
  /** Retries of a journal write that failed with a retryable error. Default 8 (exponential from 10 ms). */
  readonly journalRetries?: number
  /**
   * At a graceful shutdown (the engine's scope closes): how long the activities in flight may take to
   * finish and have their results recorded before the engine stops its executions. No activity starts
   * meanwhile; an execution may reach a suspension or its end. An activity still running at the end is
   * interrupted and runs again where its execution resumes (same idempotency key), as after a crash.
   * Default 0: the executions stop at once. On the cluster, keep it under the pod's
   * `entityTerminationTimeout` and its lease, and give every pod the same: a pod's starts to a shard whose
   * owner drains or leaves are sent again for about 8.5 s plus this pod's own grace period (at most 5
   * minutes of it).
   */
  readonly shutdownGracePeriod?: Duration.DurationInput
}

/**
 * What an execution is doing, with its decoded result when finished.
 *
 * @since 0.1.0
 * @category models
 */
export type ExecutionState<A, E> =
  | { readonly _tag: "Running" }
  | { readonly _tag: "Suspended"; readonly reason: string; readonly wakeAt: Option.Option<Date> }
  /**
   * The execution's code cannot carry it on (a non-determinism names the step the journal expects and the
   * one the code asked for). Nothing was recorded as its outcome: deploy code that can (roll back, or
   * branch with `Workflow.patched`); it is retried when an engine starts and on `resume`.
   */
  | {
    readonly _tag: "Stuck"
    readonly error: NonDeterminismError | JournalDecodeError | EncodeError | PayloadDecodeError | PayloadMismatchError | WorkflowUsageError
  }
  | { readonly _tag: "Completed"; readonly exit: Exit.Exit<A, E> }
  | { readonly _tag: "Failed"; readonly exit: Exit.Exit<A, E> }
  | { readonly _tag: "Cancelled" }
  | { readonly _tag: "Unknown" }

/**
 * One line of `list`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecutionSummary {
  readonly workflow: string
  readonly executionId: string
  readonly status: ExecutionStatus
  readonly suspendedOn: string | null
  readonly wakeAt: Date | null
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly completedAt: Date | null
}

/**
 * A page of `list`; pass `next` as `after` to get the next page.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecutionPage {
  readonly executions: ReadonlyArray<ExecutionSummary>
  readonly next: Option.Option<{ readonly workflow: string; readonly executionId: string }>
}

/**
 * The engine.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkflowEngine<T extends Message.Message.Any> {
  /**
   * Starts (or joins) the execution for `request` and awaits its result, typed as in 2024. Engine
   * faults are defects carrying the classes of `WorkflowError`. Interrupting the caller detaches it:
   * the execution goes on.
   */
  readonly send: <A extends T>(request: A) => Effect.Effect<Message.Message.Success<A>, Message.Message.Error<A>>
  /** Starts (or joins) the execution for `request`; returns once the start is committed. */
  readonly sendDiscard: (request: T) => Effect.Effect<void>
  /** Starts (or joins) an execution; returns its id once the start is committed. */
  readonly start: (request: T) => Effect.Effect<string, WorkflowEngineError>
  /** Like `send`, with engine faults as typed errors and an optional wait limit for this caller only. */
  readonly execute: <A extends T>(
    request: A,
    options?: { readonly timeout?: Duration.DurationInput }
  ) => Effect.Effect<Message.Message.Success<A>, Message.Message.Error<A> | WorkflowEngineError | ResultTimeoutError>
  /** Awaits the result of an execution started earlier (by anyone), optionally for at most `timeout`. */
  readonly result: (
    executionId: string,
    options?: { readonly timeout?: Duration.DurationInput }
  ) => Effect.Effect<
    Exit.Exit<Message.Message.Success<T>, Message.Message.Error<T>>,
    WorkflowEngineError | ResultTimeoutError
  >
  /** The result of an execution if it has finished, without waiting. */
  readonly poll: (
    executionId: string
  ) => Effect.Effect<Option.Option<Exit.Exit<Message.Message.Success<T>, Message.Message.Error<T>>>, WorkflowEngineError>
  /** What an execution is doing. */
  readonly status: (
    executionId: string
  ) => Effect.Effect<ExecutionState<Message.Message.Success<T>, Message.Message.Error<T>>, JournalError>
  /** Lists executions of the engine's workflows, by status, in pages. */
  readonly list: (options?: {
    readonly status?: ExecutionStatus
    readonly limit?: number
    readonly after?: { readonly workflow: string; readonly executionId: string }
  }) => Effect.Effect<ExecutionPage, JournalError>
  /**
   * Requests cancellation: journaled; the execution is interrupted at its next step, its compensations
   * run, and its outcome becomes cancelled for every caller. A finished execution is left as it is.
   */
  readonly cancel: (
    executionId: string
  ) => Effect.Effect<"cancelled" | "already-finished", ExecutionNotFoundError | JournalError>
  /**
   * Completes a durable deferred of an execution. The first value for a name wins; returns whether this
   * call's value was the one stored.
   */
  readonly signal: <A, E>(
    executionId: string,
    deferred: DurableDeferred<A, E>,
    exit: Exit.Exit<A, E>
  ) => Effect.Effect<{ readonly stored: boolean }, ExecutionNotFoundError | EncodeError | JournalError>
  /** Resumes an execution suspended by `Workflow.yieldExecution`. */
  readonly resume: (executionId: string) => Effect.Effect<void, ExecutionNotFoundError | JournalError>
  /** Deletes finished executions completed more than `olderThan` ago (retention; nothing by default). */
  readonly deleteCompleted: (olderThan: Duration.DurationInput) => Effect.Effect<number, JournalError>
  /** How many executions this engine holds in memory (suspended ones hold none). */
  readonly liveExecutions: Effect.Effect<number>
  /** This engine's identity in claims. */
  readonly identity: string
}

/** Decodes a recorded workflow result. */
const decodeExit = (engine: internal.Engine, workflowName: string, executionId: string, json: string) => {
  const decoded = engine.decodeResult(workflowName, json)
  return Either.isLeft(decoded)
    ? Effect.fail(
      new JournalDecodeError({ workflow: workflowName, executionId, step: "the workflow result", reason: decoded.left })
    )
    : Effect.succeed(decoded.right)
}

/** Turns a recorded exit into the typed result of the new APIs: engine faults become failures. */
const typed = (exit: Exit.Exit<any, any>): Exit.Exit<any, any> => {
  if (Exit.isFailure(exit)) {
    const defect = Cause.dieOption(exit.cause)
    if (Option.isSome(defect) && isWorkflowEngineError(defect.value)) return Exit.fail(defect.value)
  }
  return exit
}

/** Ends this caller's wait after `timeout` (the execution goes on). */
const withTimeout = <A, E>(
  effect: Effect.Effect<A, E>,
  executionId: string,
  timeout: Duration.DurationInput | undefined
): Effect.Effect<A, E | ResultTimeoutError> =>
  timeout === undefined ? effect : Effect.timeoutFail(effect, {
    duration: timeout,
    onTimeout: () => new ResultTimeoutError({ executionId })
  })

/** The state of an execution, from its row. */
const stateOf = (engine: internal.Engine, row: ExecutionRow): Effect.Effect<ExecutionState<any, any>> => {
  switch (row.status) {
    case "running":
      return Effect.succeed({ _tag: "Running" })
    case "suspended": {
      const fault = stuckFault(row.suspendedOn)
      if (fault !== undefined) return Effect.succeed({ _tag: "Stuck", error: fault })
      return Effect.succeed({
        _tag: "Suspended",
        reason: row.suspendedOn ?? "",
        wakeAt: row.wakeAt === null ? Option.none() : Option.some(new Date(row.wakeAt))
      })
    }
    case "cancelled":
      return Effect.succeed({ _tag: "Cancelled" })
    default: {
      const decoded = engine.decodeResult(row.workflow, row.result ?? "")
      const exit = Either.isRight(decoded) ? decoded.right : Exit.die(
        new JournalDecodeError({
          workflow: row.workflow,
          executionId: row.executionId,
          step: "the workflow result",
          reason: decoded.left
        })
      )
      return Effect.succeed(row.status === "completed" ? { _tag: "Completed", exit } : { _tag: "Failed", exit })
    }
  }
}

/** One line of `list`. */
const summaryOf = (row: ExecutionRow): ExecutionSummary => ({
  workflow: row.workflow,
  executionId: row.executionId,
  status: row.status,
  suspendedOn: row.suspendedOn,
  wakeAt: row.wakeAt === null ? null : new Date(row.wakeAt),
  createdAt: new Date(row.createdAt),
  updatedAt: new Date(row.updatedAt),
  completedAt: row.completedAt === null ? null : new Date(row.completedAt)
})

/**
 * Builds an engine for a workflow (use `Workflow.union` for several), scoped: closing the scope stops
 * running executions without recording anything (they resume later from the journal).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends Message.Message.Any, R>(
  workflow: Workflow<T, R>,
  options?: EngineOptions
): Effect.Effect<WorkflowEngine<T>, JournalError, R | Scope.Scope | DurableExecutionJournal> =>
  Effect.gen(function*() {
    // On the cluster (ClusterWorkflowEngine.layer in context) the same program gets the cluster engine.
    const provider = yield* Effect.serviceOption(EngineProvider)
    if (Option.isSome(provider)) return (yield* provider.value.make(workflow, options)) as WorkflowEngine<T>
    const journal = yield* DurableExecutionJournal
    const context = yield* Effect.context<R>()
    const engine = yield* internal.make(journal, workflow.definitions, context as any, options ?? {})
    return serviceOf<T>(engine, localRoutes(engine))
  })

/**
 * Where an engine's starts, signals, cancellations and resumes go: to its own engine (in-process), or to
 * the execution's owner pod (the cluster engine).
 *
 * @internal
 */
export interface EngineRoutes {
  readonly start: (
    definition: internal.Definition,
    key: ExecutionKey,
    message: unknown
  ) => Effect.Effect<internal.StartResult, WorkflowEngineError>
  readonly signal: (
    row: ExecutionRow,
    name: string,
    value: string
  ) => Effect.Effect<{ readonly stored: string }, ExecutionNotFoundError | JournalError>
  readonly cancel: (
    executionId: string
  ) => Effect.Effect<"cancelled" | "already-finished", ExecutionNotFoundError | JournalError>
  readonly resume: (executionId: string) => Effect.Effect<void, ExecutionNotFoundError | JournalError>
}

/**
 * The in-process routes: everything runs on `engine`.
 *
 * @internal
 */
export const localRoutes = (engine: internal.Engine): EngineRoutes => ({
  start: (definition, key, message) => engine.start(definition, key, message, null),
  signal: (row, name, value) => engine.signalKey(row, name, value),
  cancel: (executionId) => engine.cancel(executionId),
  resume: (executionId) => engine.resume(executionId)
})

/** The engine fault a recorded exit carries (see `typed`), if any. */
const engineFault = (exit: Exit.Exit<any, any>): Option.Option<WorkflowEngineError> => {
  const outcome = typed(exit)
  if (Exit.isSuccess(outcome)) return Option.none()
  return Option.filter(Cause.failureOption(outcome.cause), isWorkflowEngineError) as Option.Option<
    WorkflowEngineError
  >
}

/** `WorkflowEngine.poll`: the recorded exit of a finished execution, without waiting. */
const poll = (engine: internal.Engine, executionId: string) =>
  Effect.gen(function*() {
    const row = yield* engine.find(executionId)
    if (!isTerminal(row.status) || row.result === null) return Option.none()
    if (row.status === "cancelled") return yield* new WorkflowCancelledError(row)
    const exit = yield* decodeExit(engine, row.workflow, executionId, row.result)
    const fault = engineFault(exit)
    if (Option.isSome(fault)) return yield* Effect.fail(fault.value)
    return Option.some(exit)
  })

/** `WorkflowEngine.list`: one page of executions, in key order. */
const list = (engine: internal.Engine, options: Parameters<WorkflowEngine<any>["list"]>[0]) =>
  Effect.gen(function*() {
    const limit = options?.limit ?? 100
    const rows = yield* engine.journal.list({
      workflows: engine.names,
      status: options?.status,
      after: options?.after,
      limit
    })
    const last = rows[rows.length - 1]
    return {
      executions: rows.map(summaryOf),
      next: rows.length === limit && last !== undefined
        ? Option.some({ workflow: last.workflow, executionId: last.executionId })
        : Option.none()
    }
  })

/** `WorkflowEngine.signal`: encodes the value, then stores it through the routes (first value wins). */
const signal = <A, E>(
  engine: internal.Engine,
  routes: EngineRoutes,
  executionId: string,
  deferred: DurableDeferred<A, E>,
  exit: Exit.Exit<A, E>
) =>
  Effect.gen(function*() {
    const row = yield* engine.find(executionId)
    const encoded = deferred.codec.encode(exit)
    if (Either.isLeft(encoded) || encoded.right === undefined) {
      return yield* new EncodeError({
        workflow: row.workflow,
        executionId,
        step: `signal "${deferred.name}"`,
        reason: Either.isLeft(encoded) ? encoded.left : "an interruption is not a signal value"
      })
    }
    const result = yield* routes.signal(row, deferred.name, encoded.right)
    return { stored: result.stored === encoded.right }
  })

/**
 * The engine's service on an internal engine and its routes.
 *
 * @internal
 */
export const serviceOf = <T extends Message.Message.Any>(
  engine: internal.Engine,
  routes: EngineRoutes
): WorkflowEngine<T> => {
  const keyOf = (request: T) => ({ workflow: (request as any)._tag as string, executionId: PrimaryKey.value(request) })

  const startRequest = (request: T) =>
    Effect.gen(function*() {
      const definition = yield* engine.definitionOf((request as any)._tag)
      const key = keyOf(request)
      const started = yield* routes.start(definition, key, request)
      return { key, started }
    })

  const awaitExit = (
    workflowName: string,
    executionId: string,
    finished: string | undefined,
    awaitOptions?: AwaitOptions
  ) =>
    Effect.gen(function*() {
      const json = finished ?? (yield* engine.awaitResult({ workflow: workflowName, executionId }, awaitOptions))
      return yield* decodeExit(engine, workflowName, executionId, json)
    })

  // Callers ride out a short database outage: the engine's retryable journal errors start the call over
  // (a start joins the execution, resuming it if it stopped) until the caller's timeout. The workflow's
  // recorded outcome is outside the retried part: it is never retried, whatever it holds.
  const execute = <A extends T>(
    request: A,
    options?: { readonly timeout?: Duration.DurationInput },
    awaitOptions?: AwaitOptions
  ) =>
    withTimeout(
      Effect.flatMap(
        rideOutJournal(Effect.gen(function*() {
          const { key, started } = yield* startRequest(request)
          return yield* awaitExit(
            key.workflow,
            key.executionId,
            started._tag === "Finished" ? started.result : undefined,
            awaitOptions
          )
        })),
        typed
      ),
      PrimaryKey.value(request),
      options?.timeout
    ) as Effect.Effect<any, any>

  // 2024: an attempt that yields (`Workflow.yieldExecution`) ends interrupted; sending again resumes it.
  const send = <A extends T>(request: A) =>
    execute(request, undefined, { interruptOnYield: true }).pipe(
      Effect.catchIf(isWorkflowEngineError, (error) => Effect.die(error))
    ) as Effect.Effect<Message.Message.Success<A>, Message.Message.Error<A>>

  const result = (executionId: string, options?: { readonly timeout?: Duration.DurationInput }) =>
    withTimeout(
      Effect.flatMap(rideOutJournal(Effect.gen(function*() {
        const row = yield* engine.find(executionId)
        return yield* awaitExit(
          row.workflow,
          executionId,
          isTerminal(row.status) && row.result !== null ? row.result : undefined
        )
      })), (exit) => Option.match(engineFault(exit), { onNone: () => Effect.succeed(exit), onSome: Effect.fail })),
      executionId,
      options?.timeout
    )

  const service: WorkflowEngine<T> = {
    identity: engine.owner,
    send,
    sendDiscard: (request) =>
      startRequest(request).pipe(
        Effect.asVoid,
        Effect.catchIf(isWorkflowEngineError, (error) => Effect.die(error)),
        Effect.catchAll((error) => Effect.die(error))
      ),
    start: (request) => Effect.map(startRequest(request), ({ key }) => key.executionId),
    execute,
    result,
    poll: (executionId) => poll(engine, executionId),
    status: (executionId) =>
      Effect.flatMap(engine.find(executionId), (row) => stateOf(engine, row)).pipe(
        Effect.catchIf(
          (error): error is ExecutionNotFoundError => error._tag === "ExecutionNotFoundError",
          (): Effect.Effect<ExecutionState<any, any>> => Effect.succeed({ _tag: "Unknown" })
        )
      ) as Effect.Effect<ExecutionState<any, any>, JournalError>,
    list: (options) => list(engine, options),
    cancel: (executionId) => routes.cancel(executionId),
    signal: (executionId, deferred, exit) => signal(engine, routes, executionId, deferred, exit),
    resume: (executionId) => routes.resume(executionId),
    deleteCompleted: (olderThan) =>
      Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => engine.journal.deleteCompleted(now - Duration.toMillis(olderThan))
      ),
    liveExecutions: Effect.sync(() => engine.live.size)
  }
  return service
}

/**
 * Counts executions that became stuck (their code cannot carry them on: a non-determinism, an undecodable
 * journal entry...), tagged `workflow`. Each one is also logged at error level with the fault.
 *
 * @since 0.1.0
 * @category metrics
 */
export const stuckExecutions: Metric.Metric.Counter<number> = stuckExecutionsMetric

/**
 * The 2024 entry point: an engine for `workflow` on the `DurableExecutionJournal` in context, scoped.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeScoped = <T extends Message.Message.Any, R>(
  workflow: Workflow<T, R>
): Effect.Effect<WorkflowEngine<T>, never, R | Scope.Scope | DurableExecutionJournal> =>
  Effect.orDie(make(workflow))
