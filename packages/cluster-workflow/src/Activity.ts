/**
 * Activities: the journaled steps of a workflow, where side effects happen.
 *
 * A completed activity (success or typed failure) is never run again for its execution: asking for it
 * again (in a loop, on retry, on replay) returns the recorded result. A body cut off by a crash runs
 * again with the next attempt number: bodies are at-least-once, recorded results exactly-once. Make
 * bodies idempotent, e.g. with `ActivityContext.idempotencyKey`. See docs/activities.md.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import { dual } from "effect/Function"
import type * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import { ActivityContext } from "./ActivityContext.js"
import { exitCodec } from "./internal/codec.js"
import type { RetryPolicy } from "./internal/stepRuntime.js"
import { retryPolicy } from "./internal/stepRuntime.js"
import { WorkflowContext } from "./WorkflowContext.js"

/**
 * Options of an activity.
 *
 * @since 0.1.0
 * @category models
 */
export interface ActivityOptions {
  /** Retries of typed failures and defects; off by default (as in 2024). */
  readonly retry?: RetryPolicy | undefined
  /** Runs the body and records its result in one transaction of the journal's SqlClient. */
  readonly transactional?: boolean | undefined
  /** The saga compensation of a completed activity (`Workflow.withCompensation`). */
  readonly compensation?: ((value: any) => Effect.Effect<void, never, any>) | undefined
}

/**
 * An activity is an Effect that runs (or replays) a journaled step. `R` are the body's requirements.
 *
 * @since 0.1.0
 * @category models
 */
export interface Activity<A, E, R> extends Effect.Effect<A, E, Exclude<R, ActivityContext> | WorkflowContext> {
  readonly activityId: string
  readonly successSchema: Schema.Schema<A, any, never>
  readonly failureSchema: Schema.Schema<E, any, never>
  readonly body: Effect.Effect<A, E, R>
  readonly options: ActivityOptions
}

class ActivityImpl<A, E, R> extends Effectable.Class<A, E, Exclude<R, ActivityContext> | WorkflowContext>
  implements Activity<A, E, R>
{
  constructor(
    readonly activityId: string,
    readonly successSchema: Schema.Schema<A, any, never>,
    readonly failureSchema: Schema.Schema<E, any, never>,
    readonly body: Effect.Effect<A, E, R>,
    readonly options: ActivityOptions
  ) {
    super()
  }

  commit(): Effect.Effect<A, E, Exclude<R, ActivityContext> | WorkflowContext> {
    return Effect.flatMap(WorkflowContext, (context) =>
      context.runtime.runActivity({
        kind: "activity",
        scope: JSON.stringify(context.scope),
        id: this.activityId,
        codec: exitCodec(this.successSchema, this.failureSchema),
        body: this.body,
        retry: this.options.retry,
        transactional: this.options.transactional === true,
        onSuccess: this.options.compensation
      }))
  }
}

/**
 * Turns an effect into a journaled activity: `make(activityId, successSchema, failureSchema)(body)`.
 * The success schema comes first (the 2024 order). The id must be unique within the workflow (use
 * `WorkflowContext.appendToPersistenceId` in loops).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, IA, E, IE>(
  activityId: string,
  successSchema: Schema.Schema<A, IA, never>,
  failureSchema: Schema.Schema<E, IE, never>,
  options?: ActivityOptions
) =>
<R>(execute: Effect.Effect<A, E, R>): Activity<A, E, R> =>
  new ActivityImpl(activityId, successSchema, failureSchema, execute, options ?? {})

/** @internal */
export const withActivityOptions = <A, E, R>(activity: Activity<A, E, R>, options: ActivityOptions): Activity<A, E, any> =>
  new ActivityImpl(activity.activityId, activity.successSchema, activity.failureSchema, activity.body, {
    ...activity.options,
    ...options
  })

/**
 * A retry policy: an Effect `Schedule` fed with the failure (or defect), or up to `times` retries,
 * exponential from `backoff` (immediate without it).
 *
 * @since 0.1.0
 * @category models
 */
export type RetryInput =
  | Schedule.Schedule<any, any, never>
  | { readonly times: number; readonly backoff?: Duration.DurationInput }

/**
 * Retries an activity's typed failures and defects with a policy: an Effect `Schedule` (fed with the
 * failure), or `{ times, backoff? }` (up to `times` retries, exponential from `backoff`). Each decision
 * and its delay are journaled, and the delay is a durable timer: a crash neither restarts the count nor
 * re-draws jitter.
 *
 * @since 0.1.0
 * @category combinators
 */
export const retry: {
  (policy: RetryInput): <A, E, R>(activity: Activity<A, E, R>) => Activity<A, E, R>
  <A, E, R>(activity: Activity<A, E, R>, policy: RetryInput): Activity<A, E, R>
} = dual(
  2,
  <A, E, R>(activity: Activity<A, E, R>, policy: RetryInput): Activity<A, E, R> =>
    withActivityOptions(activity, { retry: retryPolicy(policy) })
)

/**
 * Runs the activity's body in a transaction of the journal's `SqlClient`, and records its result in the
 * same transaction: the body's own writes and the recorded result commit together or not at all, so a
 * database step runs exactly once. Needs a SQL journal; the body must use the journal's client.
 *
 * @since 0.1.0
 * @category combinators
 */
export const transactional = <A, E, R>(activity: Activity<A, E, R>): Activity<A, E, R> =>
  withActivityOptions(activity, { transactional: true })

/**
 * The attempt number of the running activity body: 0 first, +1 per retry or per run after a crash.
 *
 * @since 0.1.0
 * @category accessors
 */
export const currentAttempt: Effect.Effect<number, never, ActivityContext> = Effect.map(
  ActivityContext,
  (context) => context.currentAttempt
)

/**
 * The 2024 persistence id of the running activity (equal to its idempotency key).
 *
 * @since 0.1.0
 * @category accessors
 */
export const persistenceId: Effect.Effect<string, never, ActivityContext> = Effect.map(
  ActivityContext,
  (context) => context.persistenceId
)

/**
 * A stable key for the running activity, the same on every attempt (see `ActivityContext`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const idempotencyKey: Effect.Effect<string, never, ActivityContext> = Effect.map(
  ActivityContext,
  (context) => context.idempotencyKey
)

/**
 * Whether a value is an activity.
 *
 * @since 0.1.0
 * @category guards
 */
export const isActivity = (u: unknown): u is Activity<unknown, unknown, unknown> => u instanceof ActivityImpl
