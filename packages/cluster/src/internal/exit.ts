import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"

/**
 * Helpers for hot paths that answer synchronously when they can: an effect that is already a completed
 * `Exit` (as `Effect.succeed` / `Effect.fail` values are) or an `Either` (what `Serialization.json`
 * returns) is continued with plain function calls instead of fiber operations. Anything else falls back to
 * the ordinary combinator, so the result is the same either way.
 */

/** Whether an effect is already a completed `Exit`, keeping its types. */
export const isExit = <A, E, R>(effect: Effect.Effect<A, E, R>): effect is Exit.Exit<A, E> & Effect.Effect<A, E, R> =>
  Exit.isExit(effect)

/** The outcome of an effect that is a completed `Exit` or an `Either`, else `undefined`. */
export const completed = <A, E, R>(effect: Effect.Effect<A, E, R>): Exit.Exit<A, E> | undefined => {
  if (Exit.isExit(effect)) return effect as Exit.Exit<A, E>
  if (Either.isEither(effect)) {
    const either = effect as Either.Either<A, E>
    return either._tag === "Right" ? Exit.succeed(either.right) : Exit.fail(either.left)
  }
  return undefined
}

/** `Effect.flatMap`, with no fiber operation when `effect` has completed. */
export const flatMap = <A, E, R, B, E2, R2>(
  effect: Effect.Effect<A, E, R>,
  f: (a: A) => Effect.Effect<B, E2, R2>
): Effect.Effect<B, E | E2, R | R2> => {
  const exit = completed(effect)
  if (exit === undefined) return Effect.flatMap(effect, f)
  return exit._tag === "Success" ? f(exit.value) : exit as Exit.Exit<never, E>
}

/** `Effect.mapBoth`, with no fiber operation when `effect` has completed with a success or a failure. */
export const mapBoth = <A, E, R, B, E2>(
  effect: Effect.Effect<A, E, R>,
  onFailure: (e: E) => E2,
  onSuccess: (a: A) => B
): Effect.Effect<B, E2, R> => {
  const exit = completed(effect)
  if (exit !== undefined) {
    if (exit._tag === "Success") return Exit.succeed(onSuccess(exit.value))
    if (exit.cause._tag === "Fail") return Exit.fail(onFailure(exit.cause.error))
  }
  return Effect.mapBoth(effect, { onFailure, onSuccess })
}

/** `Effect.matchEffect`, with no fiber operation when `effect` has completed with a success or a failure. */
export const matchEffect = <A, E, R, B, E2, R2, C, E3, R3>(
  effect: Effect.Effect<A, E, R>,
  onFailure: (e: E) => Effect.Effect<B, E2, R2>,
  onSuccess: (a: A) => Effect.Effect<C, E3, R3>
): Effect.Effect<B | C, E2 | E3, R | R2 | R3> => {
  const exit = completed(effect)
  if (exit !== undefined) {
    if (exit._tag === "Success") return onSuccess(exit.value)
    if (exit.cause._tag === "Fail") return onFailure(exit.cause.error)
  }
  return Effect.matchEffect(effect, { onFailure, onSuccess })
}

/** An object that continues an effect with its failure or its success (its methods are called on it). */
export interface Continuation<A, E, B, E2> {
  readonly onFailure: (error: E) => Effect.Effect<B, E2>
  readonly onSuccess: (value: A) => Effect.Effect<B, E2>
}

/** `matchEffect` with the methods of `then`: no closure unless `effect` suspends. */
export const continueWith = <A, E, R, B, E2>(
  effect: Effect.Effect<A, E, R>,
  then: Continuation<A, E, B, E2>
): Effect.Effect<B, E2, R> => {
  const exit = completed(effect)
  if (exit !== undefined) {
    if (exit._tag === "Success") return then.onSuccess(exit.value)
    if (exit.cause._tag === "Fail") return then.onFailure(exit.cause.error)
  }
  return Effect.matchEffect(effect, { onFailure: (error) => then.onFailure(error), onSuccess: (value) => then.onSuccess(value) })
}
