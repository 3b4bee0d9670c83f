/**
 * One writer fiber for the manager's state. Callers mark the state changed; the writer saves a snapshot
 * taken when its write starts, so a write never lands an older state after a newer one, and several
 * changes made during one write share the next.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

export interface Persister<E> {
  /** Marks the state changed and waits until a write begun after this call has committed (or failed). */
  readonly flush: Effect.Effect<void, E>
  /** Marks the state changed; the write happens in the background (a failure is only logged). */
  readonly request: Effect.Effect<void>
}

interface Waiter<E> {
  readonly version: number
  readonly deferred: Deferred.Deferred<void, E>
}

/** `write` must read the state when it runs (it is re-run for every round) and carry its own retries. */
export const make = <E>(write: Effect.Effect<void, E>): Effect.Effect<Persister<E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const wake = yield* Queue.sliding<void>(1)
    let requested = 0
    let waiters: Array<Waiter<E>> = []

    const round = Effect.gen(function*() {
      yield* Queue.take(wake)
      const version = requested
      const exit = yield* Effect.exit(write)
      const done = waiters.filter((waiter) => waiter.version <= version)
      waiters = waiters.filter((waiter) => waiter.version > version)
      for (const waiter of done) Deferred.unsafeDone(waiter.deferred, exit)
      if (exit._tag === "Failure" && !Cause.isInterruptedOnly(exit.cause)) {
        yield* Effect.logError("could not persist the shard manager's state", exit.cause)
      }
    })
    yield* Effect.forkScoped(Effect.forever(round).pipe(Effect.annotateLogs({ fiber: "shard-manager-persist" })))

    const request = Effect.suspend(() => {
      requested++
      return Queue.offer(wake, undefined)
    }).pipe(Effect.asVoid)

    const flush = Effect.gen(function*() {
      const deferred = yield* Deferred.make<void, E>()
      waiters.push({ version: requested + 1, deferred })
      yield* request
      yield* Deferred.await(deferred)
    })
    return { flush, request }
  })
