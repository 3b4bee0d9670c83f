/**
 * A one-shot completion: the engine's cheap replacement for `Deferred` on its hot paths.
 *
 * `Deferred.unsafeMake` copies Effect's whole commit prototype into every instance (about 6 µs to make,
 * complete and await one, against well under 1 µs here), and the engine makes several per step. This one
 * is a plain class: `await` of a completed one is its `Exit` itself (no allocation); otherwise an
 * interruptible `Effect.async` whose waiter is removed on interruption, as with `Deferred.await`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/** @internal */
export class OneShot<A, E = never> {
  private exit: Exit.Exit<A, E> | undefined = undefined
  private waiters: Array<(exit: Exit.Exit<A, E>) => void> | undefined = undefined

  /** Completes with `exit` unless already completed; wakes every waiter. Returns whether it completed it. */
  unsafeDone(exit: Exit.Exit<A, E>): boolean {
    if (this.exit !== undefined) return false
    this.exit = exit
    const waiters = this.waiters
    if (waiters !== undefined) {
      this.waiters = undefined
      for (let i = 0; i < waiters.length; i++) waiters[i]!(exit)
    }
    return true
  }

  /** Calls `f` with the outcome once completed (at once if it is): before the waiters that come after. */
  unsafeOnDone(f: (exit: Exit.Exit<A, E>) => void): void {
    if (this.exit !== undefined) f(this.exit)
    else (this.waiters ?? (this.waiters = [])).push(f)
  }

  unsafeSucceed(value: A): boolean {
    return this.unsafeDone(Exit.succeed(value))
  }

  /** The outcome, once completed. */
  get unsafePoll(): Exit.Exit<A, E> | undefined {
    return this.exit
  }

  get isDone(): boolean {
    return this.exit !== undefined
  }

  /** Waits for the outcome, as an `Exit` (interruptible). */
  get awaitExit(): Effect.Effect<Exit.Exit<A, E>> {
    const exit = this.exit
    if (exit !== undefined) return Effect.succeed(exit)
    return Effect.async<Exit.Exit<A, E>>((resume) => {
      if (this.exit !== undefined) {
        resume(Effect.succeed(this.exit))
        return
      }
      const waiter = (exit: Exit.Exit<A, E>) => resume(Effect.succeed(exit))
      const waiters = this.waiters ?? (this.waiters = [])
      waiters.push(waiter)
      return Effect.sync(() => {
        const current = this.waiters
        if (current !== undefined) {
          const index = current.indexOf(waiter)
          if (index >= 0) current.splice(index, 1)
        }
      })
    })
  }

  /** Waits for the outcome (interruptible). */
  get await(): Effect.Effect<A, E> {
    const exit = this.exit
    if (exit !== undefined) return exit
    return Effect.async<A, E>((resume) => {
      if (this.exit !== undefined) {
        resume(this.exit)
        return
      }
      const waiters = this.waiters ?? (this.waiters = [])
      waiters.push(resume)
      return Effect.sync(() => {
        const current = this.waiters
        if (current !== undefined) {
          const index = current.indexOf(resume)
          if (index >= 0) current.splice(index, 1)
        }
      })
    })
  }
}
