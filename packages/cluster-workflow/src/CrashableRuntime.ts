/**
 * A test helper that simulates a process crash (2024 name and semantics).
 *
 * Code run through `run` executes on a scheduler that can be stopped. `crash` stops it: the fiber that
 * calls `crash` never takes another step, no fiber started through `run` runs another step (so no
 * finalizer, `ensuring` or `onExit` of theirs runs, as when a process dies), and every `run` of the
 * runtime, nested or not, fails with `CrashableRuntimeCrashedError`. Combine it with a journal that drops
 * uncommitted writes (see the package's tests) and start a new engine on the same journal to take over,
 * or let `retryWhileCrashes` do that.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Schema from "effect/Schema"
import type * as Scheduler from "effect/Scheduler"

/**
 * The failure of a `run` whose runtime crashed.
 *
 * @since 0.1.0
 * @category errors
 */
export class CrashableRuntimeCrashedError extends Schema.TaggedError<CrashableRuntimeCrashedError>(
  "@effect-cluster/cluster-workflow/CrashableRuntimeCrashedError"
)("@effect/cluster-workflow/CrashableRuntimeCrashedError", {}) {}

/**
 * Whether a value is a `CrashableRuntimeCrashedError`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isCrashableRuntimeCrashedError = (u: unknown): u is CrashableRuntimeCrashedError =>
  u instanceof CrashableRuntimeCrashedError

/**
 * A scheduler that stops running tasks once crashed: tasks scheduled after the crash are dropped, tasks
 * queued before it are skipped when their turn comes, and a fiber still running synchronously is made to
 * yield at its next step (whose continuation is then dropped).
 *
 * @since 0.1.0
 * @category models
 */
export class CrashableRuntimeScheduler implements Scheduler.Scheduler {
  /**
   * Whether `crash` was called.
   *
   * @since 0.1.0
   */
  crashed = false
  constructor(readonly base: Scheduler.Scheduler) {}
  /**
   * @since 0.1.0
   */
  scheduleTask(task: Scheduler.Task, priority: number, fiber?: Fiber.RuntimeFiber<unknown, unknown>): void {
    if (this.crashed) return
    this.base.scheduleTask(() => {
      if (!this.crashed) task()
    }, priority, fiber)
  }
  /**
   * @since 0.1.0
   */
  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    // A yield goes through `scheduleTask`, which drops it: the fiber stops where it is.
    return this.crashed ? 1 : this.base.shouldYield(fiber)
  }
  /**
   * Stops the scheduler.
   *
   * @since 0.1.0
   */
  crash(): void {
    this.crashed = true
  }
}

/**
 * A crashable runtime.
 *
 * @since 0.1.0
 * @category models
 */
export interface CrashableRuntime {
  /**
   * Crashes the runtime: stops every fiber started through `run` without running its finalizers, and makes
   * every `run` fail with `CrashableRuntimeCrashedError`. The fiber that calls it never resumes (a fiber
   * outside the runtime stays suspended until interrupted).
   */
  readonly crash: Effect.Effect<never>
  /** Whether `crash` was called. */
  readonly isCrashed: Effect.Effect<boolean>
  /**
   * Runs an effect on the crashable scheduler. `restore` runs a sub-effect back on the scheduler that was
   * current when the runtime was made. Fails with `CrashableRuntimeCrashedError` when the runtime crashes
   * before the effect ends (or has already crashed). Interrupting the caller interrupts the effect, unless
   * the runtime has crashed.
   */
  readonly run: <A, E, R>(
    f: (restore: <A2, E2, R2>(effect: Effect.Effect<A2, E2, R2>) => Effect.Effect<A2, E2, R2>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | CrashableRuntimeCrashedError, R>
}

// Never resumes, and (unlike `Effect.never`) holds no timer, so a crashed program does not keep the
// process alive.
const frozen: Effect.Effect<never> = Effect.async<never>(() => {})

/**
 * Makes a crashable runtime on the current scheduler.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<CrashableRuntime> = Effect.map(
  FiberRef.get(FiberRef.currentScheduler),
  (base) => {
    const scheduler = new CrashableRuntimeScheduler(base)
    // Every `run` (nested ones included) waits on this latch; completing it wakes them all at once.
    const latch = Deferred.unsafeMake<never, CrashableRuntimeCrashedError>(FiberId.none)
    const restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withScheduler(effect, base)
    const crash: Effect.Effect<never> = Effect.suspend(() => {
      scheduler.crash()
      Deferred.unsafeDone(latch, Exit.fail(new CrashableRuntimeCrashedError()))
      return frozen
    })
    return {
      crash,
      isCrashed: Effect.sync(() => scheduler.crashed),
      run: (f) =>
        Effect.suspend(() => {
          if (scheduler.crashed) return Effect.fail(new CrashableRuntimeCrashedError())
          return Effect.flatMap(
            // A daemon, so that the crash abandons it: interrupting a frozen fiber would never finish.
            Effect.forkDaemon(Effect.withScheduler(f(restore), scheduler)),
            (fiber) =>
              Effect.raceFirst(Fiber.join(fiber), Deferred.await(latch)).pipe(
                Effect.onInterrupt(() => scheduler.crashed ? Effect.void : Fiber.interrupt(fiber))
              )
          )
        })
    }
  }
)

/**
 * Runs `f` on a fresh crashable runtime, passing it the runtime's `crash`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const runWithCrash = <A, E, R>(
  f: (crash: Effect.Effect<never>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | CrashableRuntimeCrashedError, R> =>
  Effect.flatMap(make, (runtime) => runtime.run(() => f(runtime.crash)))

/**
 * Calls `f` with a fresh crashable runtime, and again with another fresh one while the result fails with
 * `CrashableRuntimeCrashedError`. `f` runs its work through `runtime.run` itself (as in 2024), so it can
 * prepare each attempt outside the crashable part.
 *
 * @since 0.1.0
 * @category combinators
 */
export const retryWhileCrashes = <A, E, R>(
  f: (runtime: CrashableRuntime) => Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, CrashableRuntimeCrashedError>, R> =>
  Effect.flatMap(make, f).pipe(
    Effect.retry({ while: isCrashableRuntimeCrashedError })
  ) as Effect.Effect<A, Exclude<E, CrashableRuntimeCrashedError>, R>
