/**
 * Durable deferreds (signals): a named, typed value a workflow waits for and someone outside provides.
 *
 * The value is journaled in the execution's inbox: a signal sent before the workflow waits for it is
 * kept; the first value for a name wins; a waiting workflow is suspended like a sleeping one (no fiber,
 * no memory). Wait with a durable timeout by wrapping `await` in `Workflow.timeout`.
 * See docs/signals.md.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import type { ExitCodec } from "./internal/codec.js"
import { exitCodec } from "./internal/codec.js"
import { WorkflowContext } from "./WorkflowContext.js"

/**
 * A durable deferred: a name and the schemas of its success and failure.
 *
 * @since 0.1.0
 * @category models
 */
export interface DurableDeferred<A, E = never> {
  readonly name: string
  readonly successSchema: Schema.Schema<A, any, never>
  readonly failureSchema: Schema.Schema<E, any, never>
  /** @internal */
  readonly codec: ExitCodec<A, E>
}

/**
 * Defines a durable deferred. Success defaults to `Schema.Void`, failure to `Schema.Never`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A = void, IA = void, E = never, IE = never>(
  name: string,
  options?: {
    readonly success?: Schema.Schema<A, IA, never>
    readonly failure?: Schema.Schema<E, IE, never>
  }
): DurableDeferred<A, E> => {
  const successSchema = (options?.success ?? Schema.Void) as Schema.Schema<A, any, never>
  const failureSchema = (options?.failure ?? Schema.Never) as Schema.Schema<E, any, never>
  return { name, successSchema, failureSchema, codec: exitCodec(successSchema, failureSchema) }
}

/**
 * Waits for the deferred's value (suspending the execution until it arrives).
 *
 * @since 0.1.0
 * @category combinators
 */
export const await_ = <A, E>(deferred: DurableDeferred<A, E>): Effect.Effect<A, E, WorkflowContext> =>
  Effect.flatMap(
    WorkflowContext,
    (context) => context.runtime.awaitSignal(JSON.stringify(context.scope), deferred.name, deferred.codec)
  )

export {
  /**
   * Waits for the deferred's value (suspending the execution until it arrives).
   *
   * @since 0.1.0
   * @category combinators
   */
  await_ as await
}

/**
 * The exit that completes a deferred with a value (for `engine.signal`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const succeed = <A, E>(_deferred: DurableDeferred<A, E>, value: A): Exit.Exit<A, E> => Exit.succeed(value)

/**
 * The exit that completes a deferred with a failure (for `engine.signal`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fail = <A, E>(_deferred: DurableDeferred<A, E>, error: E): Exit.Exit<A, E> => Exit.fail(error)
