import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type { PodState } from "./podState.js"

/** A registered singleton: it runs on the pod holding the shard of its name, under a valid lease. */
export interface Singleton {
  readonly name: string
  readonly shardId: number
  readonly run: Effect.Effect<void>
  fiber: Fiber.RuntimeFiber<void> | undefined
  // A copy interrupted and still running its finalizers: no new copy starts before it has ended.
  stopping: Fiber.RuntimeFiber<void> | undefined
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
  const { fork } = state.services

  // Starts and stops concurrently: every singleton to stop is interrupted at once (so all of them stop
  // within one entityTerminationTimeout), and the stop waits for each one's finalizers to end. The
  // interruptions are not the caller's: a caller interrupted meanwhile abandons only its wait.
  const sync = (): Effect.Effect<void> =>
    Effect.suspend(() => {
      let stopping: Array<Fiber.RuntimeFiber<void>> | undefined
      for (const singleton of list) {
        const shouldRun = state.registered && state.canServe(singleton.shardId, 0)
        if (shouldRun && singleton.fiber === undefined && singleton.stopping === undefined) {
          singleton.fiber = fork(singleton.run.pipe(
            Effect.catchAllCause((cause) =>
              Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("singleton failed", cause)
            ),
            Effect.annotateLogs({ singleton: singleton.name })
          ))
        } else if (!shouldRun && singleton.fiber !== undefined) {
          const fiber = singleton.fiber
          singleton.fiber = undefined
          singleton.stopping = fiber
          fiber.unsafeInterruptAsFork(FiberId.none)
          ;(stopping ??= []).push(fiber)
          // The shard may come back while the old copy cleans up (a lease renewed after the watchdog fired):
          // the new copy starts only once the old one has ended.
          fork(Effect.zipRight(
            Fiber.await(fiber),
            Effect.suspend(() => {
              singleton.stopping = undefined
              return sync()
            })
          ))
        }
      }
      return stopping === undefined
        ? Effect.void
        : Effect.forEach(stopping, (fiber) => Fiber.await(fiber), { concurrency: "unbounded", discard: true })
    })

  return {
    add: (name, shardId, run) => void list.push({ name, shardId, run, fiber: undefined, stopping: undefined }),
    sync,
    anyRunning: () => list.some((singleton) => singleton.fiber !== undefined)
  }
}
