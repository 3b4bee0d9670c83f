/**
 * What a workflow's body can see about its execution.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { StepRuntime } from "./internal/stepRuntime.js"

/**
 * The context of a running workflow execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkflowContext {
  /** The workflow name (the start message's `_tag`). */
  readonly workflow: string
  /** The execution id (the start message's primary key). */
  readonly executionId: string
  /** The version recorded when the execution started (the 2024 `Workflow.make` version argument). */
  readonly version: string
  /** The suffixes added by `appendToPersistenceId`, outermost first. */
  readonly scope: ReadonlyArray<string>
  /** The 2024 persistence id of a step with this local id. */
  readonly makePersistenceId: (localId: string) => string
  /** @internal */
  readonly runtime: StepRuntime
}

/**
 * The workflow context service (2024 name).
 *
 * @since 0.1.0
 * @category tags
 */
export const WorkflowContext: Context.Tag<WorkflowContext, WorkflowContext> = Context.GenericTag<WorkflowContext>(
  "@effect-cluster/cluster-workflow/WorkflowContext"
)

/**
 * Adds a suffix to the ids of every step inside `effect`, so the same activity can run once per loop
 * iteration: `Effect.forEach(items, (item) => appendToPersistenceId(item.id)(chargeItem(item)))`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const appendToPersistenceId = (suffix: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    WorkflowContext,
    (context) =>
      Effect.provideService(effect, WorkflowContext, {
        ...context,
        scope: [...context.scope, suffix],
        makePersistenceId: (localId: string) => context.makePersistenceId(localId) + suffix
      })
  )
