/**
 * The coordinator's mailbox: what the engine, the body and the steps tell an execution's coordinator.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"

/** A message to the coordinator. @internal */
export type Control =
  | { readonly _tag: "BodyExit"; readonly exit: Exit.Exit<unknown, unknown> }
  | { readonly _tag: "Fatal"; readonly error: unknown }
  | { readonly _tag: "CheckSuspend" }
  | { readonly _tag: "ReplayDone" }
  | { readonly _tag: "Inbox" }
  | { readonly _tag: "Signal"; readonly name: string; readonly value: string; readonly inboxVersion: number }
  | { readonly _tag: "Cancel" }
  | { readonly _tag: "Yield" }

/** The coordinator's mailbox: an array and one waiter (cheaper than a Queue per execution). @internal */
export class ControlQueue {
  private readonly items: Array<Control> = []
  private waiter: ((effect: Effect.Effect<Control>) => void) | undefined = undefined
  unsafeOffer(message: Control) {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter(Effect.succeed(message))
    } else {
      this.items.push(message)
    }
  }
  /** The next message (waits for one). */
  take(): Effect.Effect<Control> {
    const next = this.items.shift()
    if (next !== undefined) return Effect.succeed(next)
    return Effect.async<Control>((resume) => {
      const now = this.items.shift()
      if (now !== undefined) return resume(Effect.succeed(now))
      this.waiter = resume
      return Effect.sync(() => {
        if (this.waiter === resume) this.waiter = undefined
      })
    })
  }
}
