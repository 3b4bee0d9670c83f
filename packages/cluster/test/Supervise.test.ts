/**
 * The restart rule of the pod's and the manager's background loops (internal/supervise.ts): a loop that
 * meets a defect starts again at once after a healthy run, and backs off only while it keeps dying at once.
 * The lease watchdog runs under it: a back-off grown by defects long past would leave a pod's shards
 * unstopped at lease end while the manager moves them 500 ms later.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Logger, LogLevel, Queue } from "effect"
import { healthyRunMillis, restartDelayMillis, restartOnDefect, shortRunsAfter } from "../src/Supervise.js"

describe("restartOnDefect", () => {
  it("restarts at once after a healthy run, whatever came before; backs off only over short runs in a row", () => {
    let shortRuns = 0
    const delays: Array<number> = []
    // five runs that die at once, a healthy one, then one more that dies at once
    for (const ran of [0, 0, 0, 0, 0, healthyRunMillis, 0]) {
      shortRuns = shortRunsAfter(shortRuns, ran)
      delays.push(restartDelayMillis(shortRuns))
      shortRuns++
    }
    expect(delays).toEqual([0, 100, 200, 400, 800, 0, 100])
    expect(restartDelayMillis(40)).toBe(30_000)
  })

  it.live("a loop that dies is started again, and interruption ends it", () =>
    Effect.gen(function*() {
      const starts = yield* Queue.unbounded<number>()
      let runs = 0
      const loop = Effect.suspend(() => {
        runs++
        return Effect.zipRight(Queue.offer(starts, runs), runs <= 2 ? Effect.dieMessage(`defect ${runs}`) : Effect.never)
      })
      const fiber = yield* Effect.fork(restartOnDefect("a test loop", loop).pipe(Logger.withMinimumLogLevel(LogLevel.None)))
      expect([yield* Queue.take(starts), yield* Queue.take(starts), yield* Queue.take(starts)]).toEqual([1, 2, 3])
      yield* Fiber.interrupt(fiber)
      expect(runs).toBe(3)
    }))
})
