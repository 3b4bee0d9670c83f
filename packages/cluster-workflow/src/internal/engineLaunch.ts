/**
 * Starting, joining, claiming and launching executions, and what happens when one leaves the engine
 * (completed, suspended, stuck or stopped).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as HashMap from "effect/HashMap"
import * as Metric from "effect/Metric"
import * as ParseResult from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import type { ClaimResult, ExecutionKey, WriteResult } from "../DurableExecutionJournal.js"
import { formatVersion, isTerminal, JournalError } from "../DurableExecutionJournal.js"
import type { EngineClosedError, WorkflowUsageError } from "../WorkflowError.js"
import { EncodeError, PayloadDecodeError, PayloadMismatchError } from "../WorkflowError.js"
import { payloadHash, samePayload } from "./codec.js"
import type { Engine } from "./engine.js"
import type { Definition, ParentLink, StartResult } from "./engineShared.js"
import {
  enginesOf,
  liveClock,
  monotonicMillis,
  parseParent,
  runningResult,
  runningStart,
  shutdownBound
} from "./engineShared.js"
import type { Outcome } from "./execution.js"
import { ExecutionRuntime } from "./execution.js"
import type { CodeFault } from "./faults.js"
import { stuckExecutions } from "./faults.js"
import { claimOrRetryLater } from "./lockedClaims.js"
import { invalidIdReason } from "./ids.js"
import { OneShot } from "./oneShot.js"
import { keyString } from "./results.js"

/**
 * The message of a start refused by a moved shard's fence. It is also how the release before `reason`
 * marked it: a pod of that release (during a rolling upgrade) sends no `reason`.
 */
const shardMovedMessage = "the execution's shard moved: retry"

/** A start refused because the execution's shard moved, or is leaving this pod: the caller sends it again. */
export const shardMoved = () =>
  new JournalError({ operation: "start", message: shardMovedMessage, retryable: true, reason: "shard-moved" })

/**
 * A start refused by the fence of a pod its execution's shard has just left (the cluster engine retries
 * it): `reason: "shard-moved"`, or, from a pod of the previous release (rolling upgrade), its message.
 */
export const isShardMoved = (error: unknown): boolean =>
  error instanceof JournalError && error.operation === "start" &&
  (error.reason === "shard-moved" || (error.reason === undefined && error.message === shardMovedMessage))

/** Starts an execution, or joins the one with the same id. Returns once the start is committed. */
export const start = (
  engine: Engine,
  definition: Definition,
  key: ExecutionKey,
  message: unknown,
  parent: ParentLink | null
): Effect.Effect<StartResult, PayloadMismatchError | EncodeError | PayloadDecodeError | JournalError | EngineClosedError> => {
  return Effect.suspend((): Effect.Effect<
    StartResult,
    PayloadMismatchError | EncodeError | PayloadDecodeError | JournalError | EngineClosedError
  > => {
    const closed = engine.results.closedError
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
    return startEncoded(engine, definition, key, keyString(key), message, parent, payload, payloadHash(payload))
  })
}

const startEncoded = (
  engine: Engine,
  definition: Definition,
  key: ExecutionKey,
  id: string,
  message: unknown,
  parent: ParentLink | null,
  payload: string,
  hash: string
): Effect.Effect<StartResult, PayloadMismatchError | PayloadDecodeError | JournalError> => {
  const again = () => startEncoded(engine, definition, key, id, message, parent, payload, hash)
  const inProgress = engine.starting.get(id)
  if (inProgress !== undefined) return Effect.flatMap(inProgress.await, again)
  const running = engine.live.get(id)
  if (running !== undefined) {
    // It is leaving this engine: once it has, a send resumes it (2024: sending again resumes).
    if (running.suspending) return Effect.flatMap(running.done.await, again)
    return running.payloadHash !== undefined && !samePayload(running, payload, hash)
      ? new PayloadMismatchError(key)
      : runningResult
  }
  const gate = new OneShot<void>()
  engine.starting.set(id, gate)
  const version = definition.version(message)
  return Effect.flatMap(Effect.zip(Clock.currentTimeMillis, monotonicMillis), ([now, sentAt]) => {
    const runtime = makeRuntime(engine, definition, key, message, {
      epoch: 1,
      inboxVersion: 0,
      cancelRequested: false,
      version,
      payload,
      payloadHash: hash,
      parent,
      fresh: true
    })
    // The new execution runs at once, before its Start is committed, so that its first write (the first
    // step's attempt) shares the Start's commit. Nothing of it acts before that commit, and a Start that
    // does not create the execution breaks it: its writes are fenced (groupCommit.ts, `JournalWrite`).
    // (Not on the cluster: a run may act only once its Start has placed it on the pod: `mayAct`.)
    const early = engine.journal.mayAct === undefined
    const started = engine.committer.submit({
      _tag: "Start",
      key,
      payload,
      payloadHash: hash,
      version,
      parent: parent === null ? null : JSON.stringify(parent),
      owner: engine.owner,
      claimUntil: now + engine.leaseMillis,
      now
    }, early ? runtime : undefined)
    // Its lease, once its Start created it: whether or not the caller still waits (a caller interrupted
    // meanwhile leaves the run going, and a run without a lease end is never renewed nor stopped).
    const created = () => {
      engine.earlyStarts.delete(runtime)
      // its lease runs from the Start's sending, as a claim's does (renewals start now)
      if (!early || engine.live.get(id) === runtime) {
        engine.leaseEnds.set(runtime, sentAt + engine.leaseMillis - engine.leaseMargin)
      }
    }
    if (early) {
      started.unsafeOnDone((exit) => {
        if (Exit.isSuccess(exit) && exit.value._tag === "Created") created()
      })
      runExecution(engine, runtime, parent, started)
    }
    return Effect.matchCauseEffect(started.await, {
      // (the runtime stops; once it has left, a retried start does not find it running)
      onFailure: (cause) =>
        early ? Effect.zipRight(runtime.done.await, Effect.failCause(cause)) : Effect.failCause(cause),
      onSuccess: (result): Effect.Effect<StartResult, PayloadMismatchError | PayloadDecodeError | JournalError> => {
        if (result._tag === "Created") {
          if (!early) {
            created()
            runExecution(engine, runtime, parent, undefined)
          }
          return runningResult
        }
        return early
          ? Effect.flatMap(runtime.done.await, () => notCreated(engine, key, payload, hash, result))
          : notCreated(engine, key, payload, hash, result)
      }
    })
  }).pipe(Effect.ensuring(Effect.sync(() => {
    engine.starting.delete(id)
    gate.unsafeDone(Exit.void)
  })))
}

/** A Start that found its execution (or was fenced): join it, or say why not. */
const notCreated = (
  engine: Engine,
  key: ExecutionKey,
  payload: string,
  hash: string,
  result: WriteResult
): Effect.Effect<StartResult, PayloadMismatchError | PayloadDecodeError | JournalError> => {
  if (result._tag === "Fenced") {
    // (on the cluster: the execution's shard left this pod meanwhile; its new owner takes the retry)
    return shardMoved()
  }
  if (result._tag !== "Exists") {
    return new JournalError({ operation: "start", message: `unexpected ${result._tag}`, retryable: false })
  }
  const row = result.row
  if (!samePayload(row, payload, hash)) return new PayloadMismatchError(key)
  if (isTerminal(row.status)) return Effect.succeed({ _tag: "Finished", result: row.result ?? "" } as const)
  return Effect.as(claimOrRetryLater(engine, key), runningStart)
}

/** Claims an unfinished execution and runs it here, unless another engine holds a live claim. */
export const claimAndLaunch = (
  engine: Engine,
  key: ExecutionKey
): Effect.Effect<boolean, JournalError | PayloadDecodeError> => {
  const id = keyString(key)
  // One claim at a time per execution in this engine, and none while it runs here: this engine's own
  // claims always succeed, so two paths (orphan check, result poll, start) must not both launch it.
  const running = engine.live.get(id)
  // (a closed engine runs nothing more)
  if (engine.results.closedError !== undefined) return Effect.succeed(false)
  // A run launched before its Start was committed (until the Start created the execution): decided once
  // the Start is; a run whose Start did not create the execution leaves, and the claim is tried then (not
  // skipped as running here: the execution would wait for a lease).
  const early = running === undefined ? undefined : engine.earlyStarts.get(running)
  const settled = early?.unsafePoll
  if (early !== undefined && !(settled !== undefined && Exit.isSuccess(settled) && settled.value._tag === "Created")) {
    return settled === undefined
      ? Effect.flatMap(early.awaitExit, () => claimAndLaunch(engine, key))
      : Effect.flatMap(running!.done.await, () => claimAndLaunch(engine, key))
  }
  // A runtime leaving (its suspension being written) is claimed in the background once the write has its
  // answer (and once it has left, when it did suspend); not claimed now. Claimed at once, the claim fenced
  // its writes still in flight (a step's pipelined result): the step ran again, on the same pod. (Not
  // awaited here: the caller may be inside that very commit, as a wake from the journal can be.)
  const leaving = running?.suspending === true ? running : undefined
  const suspendWrite = leaving?.suspendWrite
  if (leaving !== undefined && suspendWrite !== undefined && !engine.claiming.has(id)) {
    engine.runFork(Effect.ignore(Effect.flatMap(suspendWrite.await, () =>
      leaving.suspending
        ? Effect.flatMap(leaving.done.await, () => claimOrRetryLater(engine, key))
        : claimOrRetryLater(engine, key))))
    return Effect.succeed(false)
  }
  if (engine.claiming.has(id) || (running !== undefined && !running.suspending)) return Effect.succeed(false)
  engine.claiming.add(id)
  return Effect.gen(function*() {
    const definition = engine.definitions.get(key.workflow)
    if (definition === undefined) return false
    const now = yield* Clock.currentTimeMillis
    const claimSentAt = yield* monotonicMillis
    const claimed = yield* claimToItsAnswer(engine, key, now)
    if (claimed._tag !== "Claimed") return false
    const row = claimed.row
    if (engine.results.closedError !== undefined) {
      // the engine closed while the claim was in flight: nothing runs here any more, so the claim is
      // given up at once (the release announces it to the live engines) rather than left to its lease
      yield* giveUp(engine, key, row.claimEpoch)
      return false
    }
    if (row.formatVersion > formatVersion) {
      // written by a newer release of this library: do not guess its meaning
      const error = new PayloadDecodeError({
        workflow: key.workflow,
        executionId: key.executionId,
        reason: `journal format ${row.formatVersion} is newer than this engine's ${formatVersion}`
      })
      yield* Effect.logError("an execution was written by a newer journal format; it is left as it is", error)
      failWaiters(engine, key, error)
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
      failWaiters(engine, key, error)
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
      failWaiters(engine, key, error)
      return yield* error
    }
    launch(engine, definition, key, decoded.right, {
      claimSentAt,
      epoch: row.claimEpoch,
      inboxVersion: row.inboxVersion,
      cancelRequested: row.cancelRequested,
      version: row.version,
      payload: row.payload,
      payloadHash: row.payloadHash,
      parent: parent.right,
      fresh: false
    })
    return true
  }).pipe(Effect.ensuring(Effect.sync(() => engine.claiming.delete(id))))
}

/**
 * The journal's claim, given up when the fiber making it is interrupted before its answer (the engine
 * closes and interrupts its background fibers, among them the claims made on announcements; a caller gives
 * up): the database may have granted it, and a claim whose answer nobody read was held until its lease
 * ended while nothing ran the execution. Its epoch unknown, the engine claims the execution again (its own
 * claim is always granted) and releases that, unless it runs here or in a sibling engine; at most
 * `shutdownBound` (live clock).
 */
const claimToItsAnswer = (
  engine: Engine,
  key: ExecutionKey,
  now: number
): Effect.Effect<ClaimResult, JournalError> =>
  Effect.onInterrupt(engine.journal.claim(key, engine.owner, now, now + engine.leaseMillis), () => {
    const id = keyString(key)
    for (const other of [engine, ...enginesOf(engine.journal)]) if (other.live.has(id)) return Effect.void
    return Effect.flatMap(Clock.currentTimeMillis, (at) =>
      Effect.withClock(
        Effect.timeout(
          Effect.interruptible(Effect.flatMap(
            engine.journal.claim(key, engine.owner, at, at + engine.leaseMillis),
            (again) => again._tag === "Claimed" ? giveUp(engine, key, again.row.claimEpoch) : Effect.void
          )),
          shutdownBound
        ),
        liveClock
      )).pipe(Effect.ignore)
  })

/**
 * Gives up a claim this engine got but will not run (the release announces it to the live engines), even
 * when interrupted meanwhile; at most `shutdownBound` (live clock), after which it ends at its lease.
 */
const giveUp = (engine: Engine, key: ExecutionKey, epoch: number): Effect.Effect<void> => {
  const release = engine.journal.release
  if (release === undefined) return Effect.void
  return Effect.uninterruptible(Effect.ignore(
    Effect.withClock(Effect.timeout(Effect.interruptible(release(engine.owner, [{ key, epoch }])), shutdownBound), liveClock)
  ))
}

interface LaunchState {
  readonly epoch: number
  readonly inboxVersion: number
  readonly cancelRequested: boolean
  readonly version: string
  readonly payload: string
  readonly payloadHash: string
  readonly parent: ParentLink | null
  readonly fresh: boolean
}

/** Runs a claimed execution here. `claimSentAt`: when the request that granted the claim was sent. */
const launch = (
  engine: Engine,
  definition: Definition,
  key: ExecutionKey,
  message: unknown,
  state: LaunchState & { readonly claimSentAt: number }
) => {
  const runtime = makeRuntime(engine, definition, key, message, state)
  engine.leaseEnds.set(runtime, state.claimSentAt + engine.leaseMillis - engine.leaseMargin)
  runExecution(engine, runtime, state.parent, undefined)
}

const makeRuntime = (
  engine: Engine,
  definition: Definition,
  key: ExecutionKey,
  message: unknown,
  state: LaunchState
): ExecutionRuntime =>
  new ExecutionRuntime(engine.services, {
    key,
    epoch: state.epoch,
    inboxVersion: state.inboxVersion,
    cancelRequested: state.cancelRequested,
    version: state.version,
    body: Effect.suspend(() => definition.execute(message)),
    context: engine.context,
    resultCodec: definition.codec,
    leaseMillis: engine.leaseMillis,
    payload: state.payload,
    payloadHash: state.payloadHash,
    fresh: state.fresh,
    parentInbox: state.parent === null ? undefined : {
      key: { workflow: state.parent.workflow, executionId: state.parent.executionId },
      name: state.parent.signal
    }
  })

/**
 * Registers the runtime as live and runs it. `started`: the uncommitted Start of a new execution; then
 * the runtime runs at once (in the caller's fiber, up to its first write), and if the Start does not
 * create the execution, the runtime's end is nobody's business (its writes were fenced).
 */
const runExecution = (
  engine: Engine,
  runtime: ExecutionRuntime,
  parent: ParentLink | null,
  started: OneShot<WriteResult, JournalError> | undefined
) => {
  const id = runtime.keyString
  engine.live.set(id, runtime)
  if (started !== undefined) engine.earlyStarts.set(runtime, started)
  // the renewal loop waits for this only when nothing was live
  if (engine.live.size === 1) engine.liveChanged.unsafeOffer(undefined)
  const left = () => {
    if (engine.live.get(id) === runtime) engine.live.delete(id)
    runtime.done.unsafeDone(Exit.void)
  }
  const refused = () => {
    const exit = started?.unsafePoll
    return exit !== undefined && !(Exit.isSuccess(exit) && exit.value._tag === "Created")
  }
  const run = Effect.onExit(
    Effect.flatMap(runtime.run, (outcome) => {
      if (!refused()) return onOutcome(engine, runtime, outcome, parent)
      if (engine.live.get(id) === runtime) engine.live.delete(id)
      engine.results.release(id)
      return Effect.void
    }),
    (exit) => Exit.isSuccess(exit) ? Effect.sync(left) : Effect.zipRight(runtime.stopBody, Effect.sync(left))
  )
  // The execution's log annotations, set on its fiber (cheaper than `Effect.annotateLogs` around it).
  engine.runFork(run, {
    updateRefs: (refs, fiberId) =>
      FiberRefs.updateAs(refs, {
        fiberId,
        fiberRef: FiberRef.currentLogAnnotations,
        value: HashMap.set(
          HashMap.set(
            FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations),
            "workflow",
            runtime.key.workflow as unknown
          ),
          "executionId",
          runtime.key.executionId
        )
      }),
    immediate: started !== undefined
  })
}

const onOutcome = (
  engine: Engine,
  runtime: ExecutionRuntime,
  outcome: Outcome,
  parent: ParentLink | null
): Effect.Effect<void> => {
  const id = runtime.keyString
  if (outcome._tag === "Completed" && parent === null) {
    // the common case, without an effect
    if (engine.live.get(id) === runtime) engine.live.delete(id)
    engine.results.succeed(id, outcome.result)
    return Effect.void
  }
  return Effect.gen(function*() {
    if (engine.live.get(id) === runtime) engine.live.delete(id)
    switch (outcome._tag) {
      case "Completed": {
        engine.results.succeed(id, outcome.result)
        if (parent !== null) {
          yield* engine.signalKey(
            { workflow: parent.workflow, executionId: parent.executionId },
            parent.signal,
            outcome.result
          ).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not deliver a child's result to its parent", cause)))
        }
        return
      }
      case "Suspended": {
        if (outcome.wakeAt !== null) engine.arm(outcome.wakeAt)
        engine.results.release(id)
        return
      }
      case "Stuck": {
        yield* onStuck(engine, runtime.key, outcome.fault)
        return
      }
      case "Stopped": {
        if (outcome.error._tag === "JournalError") {
          const error = outcome.error
          yield* Effect.logWarning("an execution stopped: the journal failed; it is retried", error)
          // A write the journal refuses for good (disk full, a value it cannot store) fails the callers
          // with the typed error (docs/engine.md) instead of leaving them waiting on a retry that may
          // never succeed; the execution itself is still taken back below.
          if (!error.retryable) failWaiters(engine, runtime.key, error)
          else engine.results.release(id)
          // Its claim is still this engine's: take it back once the journal answers again
          // (exponential backoff on the live clock, up to a minute between tries). Meanwhile a caller's
          // poll does not re-launch it (see `pollResult`).
          const key = runtime.key
          engine.retrying.add(id)
          engine.runFork(
            Effect.withClock(
              Effect.retry(
                Effect.delay(Effect.suspend(() => {
                  engine.retrying.delete(id)
                  return engine.claimAndLaunch(key)
                }), "1 second"),
                Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("1 minute")))
              ),
              liveClock
            ).pipe(Effect.ignore)
          )
          return
        }
        engine.results.release(id)
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
const onStuck = (engine: Engine, key: ExecutionKey, fault: CodeFault): Effect.Effect<void> => {
  engine.results.fail(keyString(key), fault)
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

const failWaiters = (engine: Engine, key: ExecutionKey, error: JournalError | PayloadDecodeError) => {
  engine.results.fail(keyString(key), error)
}

/**
 * Starts (or joins) a parent's child. Transient journal errors are retried here (a short outage); a
 * fault that remains is the parent's to handle (it stops or sticks, never fails).
 */
export const startChild = (
  engine: Engine,
  parent: ExecutionKey,
  signal: string,
  childId: string,
  message: any
): Effect.Effect<
  { readonly result: string | undefined },
  JournalError | PayloadMismatchError | EncodeError | PayloadDecodeError | WorkflowUsageError | EngineClosedError
> => {
  return Effect.gen(function*() {
    // A parent launched before its Start was committed starts no child before that Start created it:
    // the child's Start is another execution's, which the parent's refused Start would not fence.
    const parentRun = engine.live.get(keyString(parent))
    const parentStart = parentRun === undefined ? undefined : engine.earlyStarts.get(parentRun)
    if (parentStart !== undefined) {
      const exit = yield* parentStart.awaitExit
      if (!(Exit.isSuccess(exit) && exit.value._tag === "Created")) {
        return yield* new JournalError({
          operation: "start",
          message: "the parent's Start did not create it: its child is not started",
          retryable: false
        })
      }
    }
    const definition = yield* engine.definitionOf(message?._tag)
    const key = { workflow: definition.tag, executionId: childId }
    const started = yield* start(engine, definition, key, message, {
      workflow: parent.workflow,
      executionId: parent.executionId,
      signal
    })
    return { result: started._tag === "Finished" ? started.result : undefined }
  }).pipe(
    Effect.retry({
      schedule: Schedule.exponential("10 millis").pipe(
        Schedule.intersect(Schedule.recurs(engine.options.journalRetries ?? 8))
      ),
      while: (error) => error instanceof JournalError && error.retryable
    }),
    Effect.withClock(liveClock)
  )
}