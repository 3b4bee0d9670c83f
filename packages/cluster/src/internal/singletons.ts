import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type { PodState } from "./podState.js"

/** A registered singleton: it runs on the pod holding the shard of its name, under a valid lease. */
export interface Singleton {
  readonly name: string
  readonly shardId: number
  readonly run: Effect.Effect<void>
  fiber: Fiber.RuntimeFiber<void> | undefined
}

/** The singletons of a pod: started where their shard is held, stopped when it leaves. */
export interface Singletons {
  readonly add: (name: string, shardId: number, run: Effect.Effect<void>) => void
  /** Starts the singletons whose shard this pod now serves and stops the others. */
  readonly sync: () => Effect.Effect<void>
  readonly anyRunning: () => boolean
}

export const makeSingletons = (state: PodState): Singletons => {
  const list: Array<Singleton> = []
  const { config, fork } = state.services

  const sync = (): Effect.Effect<void> =>
    Effect.forEach(list, (singleton) => {
      const shouldRun = state.registered && state.canServe(singleton.shardId, 0)
      if (shouldRun && singleton.fiber === undefined) {
        singleton.fiber = fork(singleton.run.pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("singleton failed", cause)
          ),
          Effect.annotateLogs({ singleton: singleton.name })
        ))
        return Effect.void
      }
      if (!shouldRun && singleton.fiber !== undefined) {
        const fiber = singleton.fiber
        singleton.fiber = undefined
        return Fiber.interrupt(fiber).pipe(Effect.timeout(config.entityTerminationTimeout), Effect.ignore)
      }
      return Effect.void
    }, { discard: true })

  return {
    add: (name, shardId, run) => void list.push({ name, shardId, run, fiber: undefined }),
    sync,
    anyRunning: () => list.some((singleton) => singleton.fiber !== undefined)
  }
}
