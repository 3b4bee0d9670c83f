/**
 * Workflows: durable coordinators of activities, started by a message.
 *
 * A workflow's body must be deterministic: everything it learns from the outside world (I/O, the
 * clock, randomness) must come through steps (activities, `sleep`, signals, children), which are
 * journaled and replayed. See docs/workflows.md.
 *
 * @since 0.1.0
 */
import type { Message } from "@effect-cluster/cluster"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Schema from "effect/Schema"
import type { Activity } from "./Activity.js"
import { withActivityOptions } from "./Activity.js"
import { exitCodec } from "./internal/codec.js"
import { WorkflowContext } from "./WorkflowContext.js"

/**
 * A workflow: the schema of its start message and the effect that runs it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Workflow<T extends Message.Message.Any, R> {
  /** The start message's schema (a `Message.TaggedMessage` class, or a union of them). */
  readonly schema: Schema.Schema<T, unknown>
  /** Runs the workflow for a message. */
  readonly execute: (
    input: T
  ) => Effect.Effect<Message.Message.Success<T>, Message.Message.Error<T>, R | WorkflowContext>
  /** The version recorded when an execution starts (2024 argument of `make`; defaults to ""). */
  readonly version: (input: T) => string
  /** @internal */
  readonly definitions: ReadonlyArray<WorkflowDefinition>
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Workflow {
  /**
   * Any workflow.
   *
   * @since 0.1.0
   */
  export type Any = Workflow<any, any>
  /**
   * The requirements of a workflow.
   *
   * @since 0.1.0
   */
  export type Context<W> = W extends Workflow<infer _T, infer R> ? R : never
  /**
   * The start message of a workflow.
   *
   * @since 0.1.0
   */
  export type Request<W> = W extends Workflow<infer T, infer _R> ? T : never
}

/**
 * What the engine needs to run one workflow name.
 *
 * @internal
 */
export interface WorkflowDefinition {
  readonly tag: string
  readonly schema: Schema.Schema<any, any, never>
  readonly execute: (input: any) => Effect.Effect<any, any, any>
  readonly version: (input: any) => string
  readonly success: Schema.Schema<any, any, never>
  readonly failure: Schema.Schema<any, any, never>
}

const definitionOf = (
  schema: any,
  execute: (input: any) => Effect.Effect<any, any, any>,
  version: (input: any) => string
): WorkflowDefinition => {
  if (typeof schema?._tag !== "string" || !Schema.isSchema(schema.success) || !Schema.isSchema(schema.failure)) {
    throw new TypeError("Workflow.make expects a Message.TaggedMessage class as its schema")
  }
  return { tag: schema._tag, schema, execute, version, success: schema.success, failure: schema.failure }
}

/**
 * Defines a workflow started by messages of `schema` (a `Message.TaggedMessage` class). The optional
 * `version` is recorded when an execution starts and readable as `WorkflowContext.version` (2024).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends Message.Message.Any, R = never, I = unknown>(
  schema: Schema.Schema<T, I>,
  execute: (input: T) => Effect.Effect<Message.Message.Success<T>, Message.Message.Error<T>, R>,
  version?: (input: T) => string
): Workflow<T, Exclude<R, WorkflowContext>> => {
  const versionOf = version ?? (() => "")
  return {
    schema: schema as any,
    execute: execute as any,
    version: versionOf,
    definitions: [definitionOf(schema, execute, versionOf)]
  }
}

/**
 * One workflow for several message types: each message runs the workflow made for its type.
 *
 * @since 0.1.0
 * @category constructors
 */
export const union = <Workflows extends ReadonlyArray<Workflow.Any>>(
  ...workflows: Workflows
): Workflow<Workflow.Request<Workflows[number]>, Workflow.Context<Workflows[number]>> => {
  const definitions = workflows.flatMap((workflow) => workflow.definitions)
  const byTag = new Map(definitions.map((definition) => [definition.tag, definition]))
  const find = (input: any) => {
    const definition = byTag.get(input?._tag)
    if (definition === undefined) throw new TypeError(`unknown workflow input ${String(input?._tag)}`)
    return definition
  }
  return {
    schema: Schema.Union(...workflows.map((workflow) => workflow.schema)) as any,
    execute: (input) => Effect.suspend(() => find(input).execute(input)),
    version: (input) => find(input).version(input),
    definitions
  }
}

/**
 * A durable sleep: the deadline is journaled when the sleep starts; a sleeping execution holds no fiber
 * and no memory in the engine, and wakes at the deadline, also after a restart.
 *
 * @since 0.1.0
 * @category timers
 */
export const sleep = (persistenceId: string, duration: Duration.DurationInput): Effect.Effect<void, never, WorkflowContext> =>
  Effect.flatMap(
    WorkflowContext,
    (context) => context.runtime.sleep(JSON.stringify(context.scope), persistenceId, Duration.toMillis(duration))
  )

/**
 * Fails with `TimeoutException` when `effect` does not finish before a durable deadline
 * (a `sleep(persistenceId, duration)` raced against it). Returns the effect's value otherwise.
 *
 * @since 0.1.0
 * @category timers
 */
export const timeout = (persistenceId: string, duration: Duration.DurationInput) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | TimeoutException, R | WorkflowContext> =>
  Effect.raceFirst(
    effect,
    Effect.zipRight(sleep(persistenceId, duration), Effect.fail(new TimeoutException({ persistenceId })))
  )

/**
 * The failure of `Workflow.timeout`.
 *
 * @since 0.1.0
 * @category errors
 */
export class TimeoutException extends Schema.TaggedError<TimeoutException>(
  "@effect-cluster/cluster-workflow/TimeoutException"
)("TimeoutException", { persistenceId: Schema.String }) {}

/**
 * Suspends the execution until it is resumed (by sending its message again, or `engine.resume`), as in
 * 2024. The resumed execution replays its journal from the start.
 *
 * @since 0.1.0
 * @category combinators
 */
export const yieldExecution: Effect.Effect<never, never, WorkflowContext> = Effect.flatMap(
  WorkflowContext,
  (context) => context.runtime.yieldExecution
)

/**
 * A version marker. Returns true for executions that start with this code (the marker is journaled), and
 * for executions that recorded it; false for executions whose journal went past this point without it.
 * Branch on it to change a workflow while old executions are in flight:
 * `if (yield* Workflow.patched("send-sms")) { ...new steps } else { ...old steps }`.
 *
 * @since 0.1.0
 * @category versioning
 */
export const patched = (patchId: string): Effect.Effect<boolean, never, WorkflowContext> =>
  Effect.flatMap(WorkflowContext, (context) => context.runtime.patched(JSON.stringify(context.scope), patchId))

/**
 * Registers a compensation for an activity (saga). When the activity has completed and the workflow
 * later fails or is cancelled, the compensations of completed activities run in reverse order, each
 * journaled as its own step (so a crash during compensation resumes compensating and never compensates
 * twice). The compensation is a plain effect: the engine journals it.
 *
 * @since 0.1.0
 * @category sagas
 */
export const withCompensation: {
  <A, R2>(
    compensation: (value: A) => Effect.Effect<void, never, R2>
  ): <E, R>(activity: Activity<A, E, R>) => Activity<A, E, R | R2>
  <A, E, R, R2>(
    activity: Activity<A, E, R>,
    compensation: (value: A) => Effect.Effect<void, never, R2>
  ): Activity<A, E, R | R2>
} = dual(
  2,
  <A, E, R, R2>(
    activity: Activity<A, E, R>,
    compensation: (value: A) => Effect.Effect<void, never, R2>
  ): Activity<A, E, R | R2> => withActivityOptions(activity, { compensation: compensation as any })
)

/**
 * Starts a child workflow and awaits its result. The child's execution id is derived from the parent's
 * and `childId` (default: the message's primary key): `<parentExecutionId>/<childId>`, so a parent
 * replayed after a crash joins the same child instead of starting a second one. The child must be one of
 * the engine's workflows (`Workflow.union`).
 *
 * @since 0.1.0
 * @category children
 */
export const executeChild = <T extends Message.Message.Any>(
  message: T,
  options?: { readonly childId?: string }
): Effect.Effect<Message.Message.Success<T>, Message.Message.Error<T>, WorkflowContext> =>
  Effect.flatMap(WorkflowContext, (context) => {
    const id = options?.childId ?? PrimaryKey.value(message)
    const codec = exitCodec(Schema.successSchema(message as any), Schema.failureSchema(message as any))
    return context.runtime.child(JSON.stringify(context.scope), id, message, codec) as Effect.Effect<
      Message.Message.Success<T>,
      Message.Message.Error<T>
    >
  })
