/**
 * The engine's one timer: it sleeps until the earliest deadline (stored in the journal, or of a live
 * execution's in-memory wait), fires what is due, and re-arms when an earlier deadline is added. It never
 * polls on an interval, so `TestClock.adjust("30 days")` is one wake-up.
 *
 * When the journal answers which executions are due but refuses to claim them (a refused write, a
 * read-only replica...), the stored deadline stays in the past: instead of trying again at once, for ever,
 * the timer backs off on the live clock (50 ms, doubling up to 5 s), logs once, keeps firing in-memory
 * deadlines meanwhile, and forgets the back-off at the first round whose claims work.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type { JournalError } from "./journal.js"
import { liveClock } from "./liveClock.js"
import { OneShot } from "./oneShot.js"

/** The first and the longest wait (live clock) before claiming due executions again after a failure. */
const firstBackoff = 50
const maxBackoff = 5_000

/** @internal */
export class EngineTimer {
  /** In-memory deadlines of live executions, earliest first. */
  private readonly localTimers: Array<{ readonly wakeAt: number; readonly deferred: OneShot<void> }> = []
  private armedAt: number | undefined = undefined
  private computingWake = false
  private readonly rearm = Effect.runSync(Queue.sliding<void>(1))
  /** Consecutive rounds whose claims failed, and when (live clock) to try the due executions again. */
  private failures = 0
  private retryAt = 0

  constructor(
    /** The earliest deadline stored in the journal (retried until the journal answers). */
    private readonly nextStored: Effect.Effect<number | undefined>,
    /** Resumes the executions whose stored deadline is at or before `dueAt`; returns a claim's failure. */
    private readonly resumeDue: (dueAt: number) => Effect.Effect<JournalError | undefined>
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

  /**
   * Sleeps until the earliest deadline, resumes the executions due (in deadline order), and re-arms.
   * While claims fail (see above), the stored deadline waits for the back-off instead.
   */
  readonly loop: Effect.Effect<never> = Effect.gen(this, function*() {
    while (true) {
      this.computingWake = true
      const stored = yield* this.nextStored
      const local = this.localTimers[0]?.wakeAt
      const backingOff = this.failures > 0
      const storedNext = backingOff ? undefined : stored
      const next = storedNext === undefined ? local : local === undefined ? storedNext : Math.min(storedNext, local)
      this.armedAt = next
      this.computingWake = false
      const now = yield* Clock.currentTimeMillis
      const waits: Array<Effect.Effect<"deadline" | "rearm" | "retry">> = [Effect.as(Queue.take(this.rearm), "rearm")]
      if (next !== undefined) waits.push(Effect.as(Effect.sleep(Math.max(0, next - now)), "deadline"))
      if (backingOff) {
        const wait = Effect.flatMap(Clock.currentTimeMillis, (liveNow) => Effect.sleep(Math.max(0, this.retryAt - liveNow)))
        waits.push(Effect.as(Effect.withClock(wait, liveClock), "retry"))
      }
      const woke = next !== undefined && next <= now && !backingOff ? "deadline" : yield* Effect.raceAll(waits)
      if (woke === "rearm") continue
      const dueAt = yield* Clock.currentTimeMillis
      this.fireLocalTimers(dueAt)
      if (stored === undefined || stored > dueAt) {
        this.failures = 0 // nothing stored is due: nothing to back off from
        continue
      }
      if (backingOff && woke !== "retry") continue
      yield* this.afterRound(yield* this.resumeDue(dueAt))
    }
  })

  /** Counts a round's claim failure (backing off, logged once) or forgets the back-off. */
  private afterRound(failure: JournalError | undefined): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      if (failure === undefined) {
        if (this.failures > 0) yield* Effect.logInfo("claiming due executions works again")
        this.failures = 0
        return
      }
      this.failures++
      const delay = Math.min(maxBackoff, firstBackoff * 2 ** Math.min(this.failures - 1, 20))
      this.retryAt = (yield* Effect.withClock(Clock.currentTimeMillis, liveClock)) + delay
      if (this.failures === 1) {
        yield* Effect.logWarning("could not claim due executions; trying again with back-off", failure)
      } else {
        yield* Effect.logDebug("could not claim due executions").pipe(Effect.annotateLogs({ retryInMillis: delay }))
      }
    })
  }
}
