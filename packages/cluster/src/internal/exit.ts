import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/**
 * Whether an effect is already a completed `Exit` (as `Effect.succeed` and `Effect.fail` values are), keeping
 * its types. Hot paths use it to answer synchronously, without running fiber operations.
 */
export const isExit = <A, E, R>(effect: Effect.Effect<A, E, R>): effect is Exit.Exit<A, E> & Effect.Effect<A, E, R> =>
  Exit.isExit(effect)
