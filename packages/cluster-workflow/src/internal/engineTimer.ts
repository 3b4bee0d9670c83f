/**
 * The engine's one timer: it sleeps until the earliest deadline (stored in the journal, or of a live
 * execution's in-memory wait), fires what is due, and re-arms when an earlier deadline is added. It never
 * polls on an interval, so `TestClock.adjust("30 days")` is one wake-up.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import { OneShot } from "./oneShot.js"

/** @internal */
export class EngineTimer {
  /** In-memory deadlines of live executions, earliest first. */
  private readonly localTimers: Array<{ readonly wakeAt: number; readonly deferred: OneShot<void> }> = []
  private armedAt: number | undefined = undefined
  private computingWake = false
  private readonly rearm = Effect.runSync(Queue.sliding<void>(1))

  constructor(
    /** The earliest deadline stored in the journal (retried until the journal answers). */
    private readonly nextStored: Effect.Effect<number | undefined>,
    /** Resumes the executions whose stored deadline is at or before `dueAt`. */
    private readonly resumeDue: (dueAt: number) => Effect.Effect<void>
  ) {}

  /**
   * Waits until `wakeAt` through the engine's one timer (no timer per waiting step): a live execution's
   * sleep before it suspends, or a retry delay while other steps of it run.
   */
  sleepUntil(wakeAt: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const entry = { wakeAt, deferred: new OneShot<void>() }
      let i = this.localTimers.length
      while (i > 0 && this.localTimers[i - 1]!.wakeAt > wakeAt) i--
      this.localTimers.splice(i, 0, entry)
      this.arm(wakeAt)
      return Effect.onInterrupt(entry.deferred.await, () =>
        Effect.sync(() => {
          const index = this.localTimers.indexOf(entry)
          if (index >= 0) this.localTimers.splice(index, 1)
        }))
    })
  }

  private fireLocalTimers(now: number) {
    while (this.localTimers.length > 0 && this.localTimers[0]!.wakeAt <= now) {
      this.localTimers.shift()!.deferred.unsafeDone(Exit.void)
    }
  }

  /** Arms the timer for `wakeAt` when it is earlier than the armed deadline. */
  arm(wakeAt: number) {
    if (this.computingWake || this.armedAt === undefined || wakeAt < this.armedAt) this.rearm.unsafeOffer(undefined)
  }

  /** Sleeps until the earliest deadline, resumes the executions due (in deadline order), and re-arms. */
  readonly loop: Effect.Effect<never> = Effect.gen(this, function*() {
    while (true) {
      this.computingWake = true
      const stored = yield* this.nextStored
      const local = this.localTimers[0]?.wakeAt
      const next = stored === undefined ? local : local === undefined ? stored : Math.min(stored, local)
      this.armedAt = next
      this.computingWake = false
      if (next === undefined) {
        yield* Queue.take(this.rearm)
        continue
      }
      const now = yield* Clock.currentTimeMillis
      if (next > now) {
        const woke = yield* Effect.raceFirst(
          Effect.as(Effect.sleep(next - now), "deadline" as const),
          Effect.as(Queue.take(this.rearm), "rearm" as const)
        )
        if (woke === "rearm") continue
      }
      const dueAt = yield* Clock.currentTimeMillis
      this.fireLocalTimers(dueAt)
      if (stored === undefined || stored > dueAt) continue
      yield* this.resumeDue(dueAt)
    }
  })
}
