/**
 * A test helper that simulates a process crash (2024 name).
 *
 * Code run through `run` executes on a scheduler that can be stopped: after `crash`, no fiber started
 * there runs another step, so no finalizer, `ensuring` or `onExit` runs, as when a process dies. Combine
 * it with a journal that drops uncommitted writes (see the package's tests) and start a new engine on
 * the same journal to take over.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Scheduler from "effect/Scheduler"

/**
 * The failure of a `run` whose runtime crashed.
 *
 * @since 0.1.0
 * @category errors
 */
export class CrashableRuntimeCrashedError extends Schema.TaggedError<CrashableRuntimeCrashedError>(
  "@effect-cluster/cluster-workflow/CrashableRuntimeCrashedError"
)("CrashableRuntimeCrashedError", {}) {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isCrashableRuntimeCrashedError = (u: unknown): u is CrashableRuntimeCrashedError =>
  u instanceof CrashableRuntimeCrashedError

/**
 * A scheduler that stops running tasks once crashed.
 *
 * @since 0.1.0
 * @category models
 */
export class CrashableRuntimeScheduler implements Scheduler.Scheduler {
  crashed = false
  constructor(readonly base: Scheduler.Scheduler) {}
  scheduleTask(task: Scheduler.Task, priority: number) {
    if (this.crashed) return
    this.base.scheduleTask(() => {
      if (!this.crashed) task()
    }, priority)
  }
  shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]) {
    return this.base.shouldYield(fiber)
  }
}

/**
 * A crashable runtime.
 *
 * @since 0.1.0
 * @category models
 */
export interface CrashableRuntime {
  /** Stops every fiber started through `run`, without running their finalizers. */
  readonly crash: Effect.Effect<void>
  /** Whether `crash` was called. */
  readonly isCrashed: Effect.Effect<boolean>
  /**
   * Runs an effect on the crashable scheduler. `restore` runs a sub-effect back on the normal scheduler.
   * Fails with `CrashableRuntimeCrashedError` when the runtime crashes before the effect ends.
   */
  readonly run: <A, E, R>(
    f: (restore: <A2, E2, R2>(effect: Effect.Effect<A2, E2, R2>) => Effect.Effect<A2, E2, R2>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | CrashableRuntimeCrashedError, R>
}

/**
 * Makes a crashable runtime.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<CrashableRuntime> = Effect.sync(() => {
  const scheduler = new CrashableRuntimeScheduler(Scheduler.defaultScheduler)
  let notify: (() => void) | undefined
  const crashed = Effect.async<never, CrashableRuntimeCrashedError>((resume) => {
    if (scheduler.crashed) return resume(Effect.fail(new CrashableRuntimeCrashedError()))
    notify = () => resume(Effect.fail(new CrashableRuntimeCrashedError()))
  })
  return {
    crash: Effect.sync(() => {
      scheduler.crashed = true
      notify?.()
    }),
    isCrashed: Effect.sync(() => scheduler.crashed),
    run: (f) =>
      Effect.gen(function*() {
        // A daemon, so that the crash abandons it: interrupting a frozen fiber would never finish.
        const fiber = yield* Effect.forkDaemon(
          Effect.withScheduler(f((effect) => Effect.withScheduler(effect, Scheduler.defaultScheduler)), scheduler)
        )
        return yield* Effect.raceFirst(Fiber.join(fiber), crashed).pipe(
          Effect.onInterrupt(() => scheduler.crashed ? Effect.void : Fiber.interrupt(fiber))
        )
      })
  }
})

/**
 * Runs `f` with a function that crashes the runtime.
 *
 * @since 0.1.0
 * @category combinators
 */
export const runWithCrash = <A, E, R>(
  f: (crash: Effect.Effect<void>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | CrashableRuntimeCrashedError, R> =>
  Effect.flatMap(make, (runtime) => runtime.run(() => f(runtime.crash)))

/**
 * Runs `f` on a fresh crashable runtime, again and again while it crashes.
 *
 * @since 0.1.0
 * @category combinators
 */
export const retryWhileCrashes = <A, E, R>(
  f: (runtime: CrashableRuntime) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.flatMap(make, (runtime) => runtime.run(() => f(runtime))).pipe(
    Effect.catchIf(isCrashableRuntimeCrashedError, () => retryWhileCrashes(f)) as any
  ) as Effect.Effect<A, E, R>
