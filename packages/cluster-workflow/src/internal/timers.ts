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

/** @internal */
export abstract class Timers extends Replay {
  /** Waits until `wakeAt` as a durable wait: the execution may suspend meanwhile. */
  protected waitUntil(step: Step, wakeAt: number, reason: string): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const now = yield* Clock.currentTimeMillis
      if (now >= wakeAt) return
      step.wakeAt = wakeAt
      step.waitingOn = reason
      this.waiting.add(step)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
      yield* this.engine.sleepUntil(wakeAt).pipe(
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
        let wakeAt: number
        if (step.startedBody !== undefined) {
          wakeAt = safeParse(step.startedBody)?.wakeAt ?? 0
        } else {
          const now = yield* Clock.currentTimeMillis
          wakeAt = now + millis
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
