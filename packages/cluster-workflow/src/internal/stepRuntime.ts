/**
 * What a workflow's steps ask of their execution: the interface `WorkflowContext` carries, the step
 * identity and the retry policy type. Shared by the public modules and the execution runtime, so neither
 * imports the other.
 *
 * @internal
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { ActivityContext } from "../ActivityContext.js"
import type { ExitCodec } from "./codec.js"

/** @internal */
export type StepKind = "activity" | "timer" | "signal" | "child" | "patch" | "compensation"

/** @internal */
export const stepKeyOf = (kind: string, scope: string, id: string): string => kind + "\u0000" + scope + "\u0000" + id

/** A retry policy: an Effect Schedule fed with the failure (or defect). @internal */
export type RetryPolicy = Schedule.Schedule<unknown, unknown, never>

/** @internal */
export const retryPolicy = (
  options: Schedule.Schedule<any, any, never> | { readonly times: number; readonly backoff?: Duration.DurationInput }
): RetryPolicy =>
  Schedule.isSchedule(options)
    ? options as RetryPolicy
    : (options.backoff === undefined
      ? Schedule.recurs(options.times)
      : Schedule.intersect(Schedule.exponential(options.backoff), Schedule.recurs(options.times))) as RetryPolicy

/** What `runActivity` runs. @internal */
export interface ActivityRun<A, E, R> {
  readonly kind: "activity" | "compensation"
  readonly scope: string
  readonly id: string
  readonly codec: ExitCodec<A, E>
  readonly body: Effect.Effect<A, E, R>
  readonly retry: RetryPolicy | undefined
  readonly transactional: boolean
  readonly onSuccess?: ((value: A) => Effect.Effect<void, never, any>) | undefined
}

/** The steps a workflow body asks its execution for (scopes are JSON arrays of suffixes). @internal */
export interface StepRuntime {
  readonly runActivity: <A, E, R>(options: ActivityRun<A, E, R>) => Effect.Effect<A, E, Exclude<R, ActivityContext>>
  readonly sleep: (scope: string, id: string, millis: number) => Effect.Effect<void>
  readonly awaitSignal: <A, E>(scope: string, name: string, codec: ExitCodec<A, E>) => Effect.Effect<A, E>
  readonly child: <A, E>(scope: string, id: string, message: unknown, codec: ExitCodec<A, E>) => Effect.Effect<A, E>
  readonly patched: (scope: string, id: string) => Effect.Effect<boolean>
  readonly yieldExecution: Effect.Effect<never>
}
