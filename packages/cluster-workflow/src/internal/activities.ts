/**
 * Activities (and compensations) as journaled steps: each attempt is recorded before its body runs, then
 * its result or a retry decision (with its delay, a durable wait) is recorded; a transactional activity
 * records its result in the body's own SQL transaction.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import { ActivityContext } from "../ActivityContext.js"
import type { WriteResult } from "../DurableExecutionJournal.js"
import { JournalError } from "../DurableExecutionJournal.js"
import { EncodeError, WorkflowUsageError } from "../WorkflowError.js"
import type { ExitCodec } from "./codec.js"
import { interruptJson } from "./codec.js"
import { Inbox } from "./inbox.js"
import type { Step } from "./replay.js"
import { describeStep, idempotencyKey, safeScope } from "./replay.js"
import type { ActivityRun, RetryPolicy } from "./stepRuntime.js"

/** A live run of an activity: the context its body replaced, while the body runs. */
interface LiveRun {
  previous: Context.Context<never> | undefined
}

/** @internal */
export abstract class Activities extends Inbox {
  /** Runs an activity (or a compensation) as a journaled step. */
  runActivity<A, E, R>(options: ActivityRun<A, E, R>): Effect.Effect<A, E, Exclude<R, ActivityContext>> {
    return Effect.suspend((): Effect.Effect<A, E, any> => {
      const requested = this.requestNow(options.kind, options.scope, options.id)
      if (!("step" in requested)) return this.fatal(requested)
      const { first, step } = requested
      if (!first) {
        // (abandoned by its first requester: ask again)
        return Effect.flatMap(
          step.done.await,
          (json): Effect.Effect<A, E, any> =>
            json === undefined ? this.runActivity(options) : this.decode(step, options.codec, json)
        )
      }
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
  protected leaveBody(live: LiveRun): Effect.Effect<void> {
    const previous = live.previous
    if (previous === undefined) return Effect.void
    live.previous = undefined
    this.leaveActive()
    return FiberRef.set(FiberRef.currentContext, previous)
  }

  /** Runs the step's attempts (after any recorded retry delay) until it has a result to record. */
  protected runActivityLive<A, E, R>(
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
  protected attemptActivity<A, E, R>(
    step: Step,
    options: ActivityRun<A, E, R>,
    live: LiveRun
  ): Effect.Effect<string, never, any> {
    // (a graceful shutdown lets the activities in flight finish but starts none: this step runs where the
    // execution resumes, its body interrupted here with the rest when the engine stops)
    if (this.draining) return Effect.never
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

  protected runAttempt<A, E, R>(
    step: Step,
    attempt: number,
    started: WriteResult,
    options: ActivityRun<A, E, R>,
    live: LiveRun
  ): Effect.Effect<string, never, any> {
    if (started._tag !== "Ok") return Effect.interrupt
    // (recorded, but a graceful shutdown began meanwhile: the attempt is left to where the execution resumes)
    if (this.draining) return Effect.never
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
    const mayAct = this.engine.journal.mayAct
    if (mayAct === undefined) return this.runBody(step, attempt, options, activityContext, live)
    // On the cluster: the attempt was recorded while the pod served the shard, but the pod may have been
    // paused since, past its lease; then the shard's new owner runs the execution, and this body must not.
    return Effect.flatMap(
      mayAct(this.key),
      (may): Effect.Effect<string, never, any> =>
        may ? this.runBody(step, attempt, options, activityContext, live) : this.fatal(this.claimLost())
    )
  }

  /**
   * Runs an activity body with its `ActivityContext`, counted as active. The context is set on the fiber
   * and restored afterwards (what `provideService` does, without its acquire/release machinery); if the
   * body is interrupted, `runActivity` restores it (`live`).
   */
  protected runBody<A, E, R>(
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
      // The attempt stays active after its body until its result or retry decision is pipelined (a retry
      // policy may take a while to decide): a drain hears of it then, and commits it. Owed from the body's
      // end (before, `runActivity` settles it), once, however the decision ends.
      let owed = false
      const decided = () => {
        if (!owed) return
        owed = false
        this.leaveActive()
      }
      // (a continuation runs on the fiber that ran the body: `fiber`)
      return Effect.onExit(
        Effect.flatMap(Effect.exit(options.body), (exit) => {
          if (live.previous === undefined) return this.afterAttempt(step, attempt, exit, options, live, fiber, noop)
          setFiberRef(fiber, FiberRef.currentContext, live.previous)
          live.previous = undefined
          owed = true
          return this.afterAttempt(step, attempt, exit, options, live, fiber, decided)
        }),
        () => Effect.sync(decided)
      )
    })
  }

  protected afterAttempt<A, E, R>(
    step: Step,
    attempt: number,
    exit: Exit.Exit<A, E>,
    options: ActivityRun<A, E, R>,
    live: LiveRun,
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    decided: () => void
  ): Effect.Effect<string, never, any> {
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
      this.abandon(step)
      decided()
      return Effect.interrupt
    }
    {
      const decidedAt = clockOf(fiber).unsafeCurrentTimeMillis()
      if (Exit.isFailure(exit) && options.retry !== undefined) {
        return Effect.flatMap(this.retryDelay(options.retry, step, exit.cause, decidedAt), (delay) => {
          if (Option.isNone(delay)) {
            const finished = this.finishAttempt(step, attempt, exit, options.codec, decidedAt)
            decided()
            return finished
          }
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
          decided()
          return this.runActivityLive(step, options, live)
        })
      }
      const finished = this.finishAttempt(step, attempt, exit, options.codec, decidedAt)
      decided()
      return finished
    }
  }

  protected finishAttempt<A, E>(
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
  protected retryDelay(
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

  protected runTransactional<A, E, R>(
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
      // The execution's earlier writes (another step's result still queued in the group committer) must
      // commit before this step's result, whose sequence follows theirs: they are held back from the
      // committer while the transaction is open and committed in it, ahead of the result.
      const result = yield* Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(this.engine.committer.hold(this)), (held) =>
          restore(Effect.gen(this, function*() {
            let committed: ReadonlyArray<WriteResult> | undefined
            const json = yield* sql.withTransaction(Effect.gen(this, function*() {
              const exit = yield* Effect.exit(Effect.provideService(options.body, ActivityContext, activityContext))
              if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) return yield* Effect.interrupt
              const encoded = options.codec.encode(exit)
              if (Either.isLeft(encoded)) return yield* Effect.fail({ _tag: "Encode" as const, reason: encoded.left })
              const json = encoded.right ?? interruptJson
              const now = yield* Clock.currentTimeMillis
              if (this.broken) return yield* Effect.fail({ _tag: "Fenced" as const })
              // (the event takes its sequence after every held write's, and before any later write's)
              const completed = this.append(
                [this.event("StepCompleted", step.kind, step.scope, step.id, attempt, json)],
                undefined,
                now
              )
              const earlier = held.take()
              const results = yield* this.engine.journal.commit([...earlier, completed])
              if (results.some((written) => written._tag !== "Ok")) return yield* Effect.fail({ _tag: "Fenced" as const })
              committed = results.slice(0, earlier.length)
              return json
            }))
            return { json, committed }
          }).pipe(Effect.either)).pipe(Effect.onExit((exit) =>
            // Rolled back: the taken writes go back to the committer (a lost claim fences them there).
            held.release(
              Exit.isSuccess(exit) && Either.isRight(exit.value) ? Exit.succeed(exit.value.right.committed!) : undefined
            )
          )))
      ).pipe(
        Effect.ensuring(Effect.sync(() => {
          this.leaveActive()
        }))
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
      this.resolve(step, result.right.json)
      return result.right.json
    })
  }
}

const noop = () => {}

/** `@effect/sql`'s SqlClient tag, by key, so this module does not import the package. */
const SqlClientTag = Context.GenericTag<unknown>("@effect/sql/SqlClient")

/**
 * Sets a fiber ref of the running fiber `fiber` (from inside its own `withFiberRuntime` or a continuation
 * of it) without an effect: what `FiberRef.set` does in its `withFiberRuntime`.
 */
const setFiberRef = <A>(fiber: Fiber.RuntimeFiber<unknown, unknown>, ref: FiberRef.FiberRef<A>, value: A): void =>
  (fiber as unknown as { setFiberRef(ref: FiberRef.FiberRef<A>, value: A): void }).setFiberRef(ref, value)

/** The fiber's clock: what `Clock.currentTimeMillis` reads, without its effect. */
const clockOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Clock.Clock =>
  Context.get(fiber.currentDefaultServices, Clock.Clock)

const isDone = (decision: ScheduleDecision.ScheduleDecision): decision is ScheduleDecision.Done =>
  decision._tag === "Done"
