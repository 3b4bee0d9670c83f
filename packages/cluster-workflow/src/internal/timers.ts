/**
 * Durable waits on time: `Workflow.sleep` (its deadline journaled when it starts) and the waits of retry
 * delays. A waiting step holds the execution only until the coordinator suspends it.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { voidJson } from "./codec.js"
import type { Step } from "./replay.js"
import { Replay, safeParse } from "./replay.js"

/**
 * The deadline recorded in a timer's `StepStarted` body: null for an infinite duration (also as recorded by
 * earlier releases, which wrote `Infinity` as null); a body without one is due at once.
 */
const recordedDeadline = (body: string): number | null => {
  const wakeAt = safeParse(body)?.wakeAt
  return wakeAt === null ? null : typeof wakeAt === "number" ? wakeAt : 0
}

/** @internal */
export abstract class Timers extends Replay {
  /**
   * Waits until `wakeAt` as a durable wait: the execution may suspend meanwhile. `null` (an infinite
   * duration) never fires: the step waits, suspended without a deadline, until something else ends it.
   */
  protected waitUntil(step: Step, wakeAt: number | null, reason: string): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      if (wakeAt !== null && now >= wakeAt) return
      step.wakeAt = wakeAt ?? undefined
      step.waitingOn = reason
      this.waiting.add(step)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
      yield* (wakeAt === null ? Effect.never : this.engine.sleepUntil(wakeAt)).pipe(
        Effect.ensuring(Effect.sync(() => {
          this.waiting.delete(step)
          step.wakeAt = undefined
          step.waitingOn = undefined
        }))
      )
    })
  }

  /** A durable sleep: the deadline is recorded when the sleep starts. */
  sleep(scope: string, id: string, millis: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const { first, step } = yield* this.request("timer", scope, id)
      if (!first) {
        // (abandoned by its first requester: ask again)
        if ((yield* step.done.await) === undefined) yield* this.sleep(scope, id, millis)
        return
      }
      const gate = yield* this.awaitGate(step)
      if (gate._tag === "Done") return
      yield* Effect.gen(this, function*() {
        let wakeAt: number | null
        if (step.startedBody !== undefined) {
          wakeAt = recordedDeadline(step.startedBody)
        } else {
          const now = yield* Clock.currentTimeMillis
          // an infinite duration is journaled as `"wakeAt": null`: a deadline that never comes
          wakeAt = Number.isFinite(millis) ? now + millis : null
          step.startedBody = JSON.stringify({ wakeAt })
          // (a sleep asked for again after an abandonment is re-armed: its next attempt)
          step.attempt++
          this.pipeline([this.event("StepStarted", "timer", scope, id, step.attempt, step.startedBody)], undefined, now)
        }
        yield* this.waitUntil(step, wakeAt, "timer")
        this.recordCompletion(step, step.attempt, voidJson, yield* Clock.currentTimeMillis)
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => this.abandon(step))))
    })
  }
}
