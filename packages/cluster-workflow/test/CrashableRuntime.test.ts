/**
 * CrashableRuntime, as a 2024 program uses it: through its own subpath, `crash` stopping the fiber that
 * calls it and every fiber of the runtime without finalizers, every `run` failing, and
 * `retryWhileCrashes` starting over on a fresh runtime.
 */
import * as CrashableRuntime from "@effect-cluster/cluster-workflow/CrashableRuntime"
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import { pipe } from "effect/Function"
import * as Ref from "effect/Ref"

// Gives every other fiber many turns on the normal scheduler (a frozen one would have run by now).
const manyTurns = Effect.repeatN(Effect.yieldNow(), 200)

describe("CrashableRuntime", () => {
  it.effect("runs an effect that does not crash", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      expect(yield* runtime.run(() => Effect.succeed(42))).toBe(42)
      expect(yield* runtime.isCrashed).toBe(false)
    }))

  it.effect("crash is Effect<never>: the calling fiber takes no further step and run fails", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      const crash: Effect.Effect<never> = runtime.crash
      const steps = yield* Ref.make<Array<string>>([])
      const result = yield* runtime.run(() =>
        pipe(
          Ref.update(steps, (s) => [...s, "before"]),
          Effect.zipRight(crash),
          Effect.zipRight(Ref.update(steps, (s) => [...s, "after"]))
        )
      ).pipe(Effect.either)
      yield* manyTurns
      expect(Either.isLeft(result) && CrashableRuntime.isCrashableRuntimeCrashedError(result.left)).toBe(true)
      expect(yield* Ref.get(steps)).toEqual(["before"])
    }))

  it.effect("no finalizer runs: release, ensuring and onExit are skipped", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      const value = yield* Ref.make(0)
      const finalizers = yield* Ref.make(0)
      yield* runtime.run(() =>
        Effect.acquireUseRelease(
          Ref.set(value, 1),
          () =>
            pipe(
              Ref.set(value, 2),
              Effect.zipRight(runtime.crash),
              Effect.zipRight(Ref.set(value, 3)),
              Effect.ensuring(Ref.update(finalizers, (n) => n + 1)),
              Effect.onExit(() => Ref.update(finalizers, (n) => n + 1))
            ),
          () => Ref.set(value, 4)
        )
      ).pipe(Effect.ignore)
      yield* manyTurns
      expect(yield* Ref.get(value)).toBe(2)
      expect(yield* Ref.get(finalizers)).toBe(0)
    }))

  it.effect("the other fibers of the runtime stop too, their finalizers unrun", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      const ticks = yield* Ref.make(0)
      const finalized = yield* Ref.make(false)
      const started = yield* Deferred.make<void>()
      const exit = yield* runtime.run(() =>
        Effect.gen(function*() {
          yield* Effect.fork(
            pipe(
              Ref.update(ticks, (n) => n + 1),
              Effect.zipRight(Deferred.succeed(started, undefined)),
              Effect.zipRight(Effect.yieldNow()),
              Effect.forever,
              Effect.ensuring(Ref.set(finalized, true))
            )
          )
          yield* Deferred.await(started)
          yield* Effect.yieldNow()
          return yield* runtime.crash
        })
      ).pipe(Effect.exit)
      expect(exit._tag).toBe("Failure")
      const atCrash = yield* Ref.get(ticks)
      yield* manyTurns
      expect(atCrash).toBeGreaterThan(0)
      expect(yield* Ref.get(ticks)).toBe(atCrash)
      expect(yield* Ref.get(finalized)).toBe(false)
    }))

  it.effect("several runs on one runtime, side by side or nested, all fail with the crash", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      const gate = yield* Deferred.make<void>()
      const afterNested = yield* Ref.make(false)
      const waiting = yield* Effect.fork(Effect.either(runtime.run(() => Deferred.await(gate))))
      const nesting = yield* Effect.fork(
        Effect.either(
          runtime.run(() =>
            pipe(
              runtime.run(() => Effect.zipRight(Deferred.await(gate), Effect.never)),
              Effect.either,
              Effect.zipRight(Ref.set(afterNested, true))
            )
          )
        )
      )
      yield* manyTurns
      const crasher = yield* Effect.either(runtime.run(() => runtime.crash))
      const results = [crasher, yield* Fiber.join(waiting), yield* Fiber.join(nesting)]
      for (const result of results) {
        expect(Either.isLeft(result) && CrashableRuntime.isCrashableRuntimeCrashedError(result.left)).toBe(true)
      }
      // the outer run's fiber did not see its nested run fail: it was frozen
      yield* manyTurns
      expect(yield* Ref.get(afterNested)).toBe(false)
      // a crashed runtime runs nothing more
      const late = yield* Ref.make(false)
      const again = yield* Effect.either(runtime.run(() => Ref.set(late, true)))
      yield* manyTurns
      expect(Either.isLeft(again)).toBe(true)
      expect(yield* Ref.get(late)).toBe(false)
      expect(yield* runtime.isCrashed).toBe(true)
    }))

  it.effect("restore runs a sub-effect on the normal scheduler, which finishes even after a crash", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      const gate = yield* Deferred.make<void>()
      const inRestore = yield* Ref.make(0)
      const afterRestore = yield* Ref.make(false)
      const worker = yield* Effect.fork(
        runtime.run((restore) =>
          pipe(
            restore(Effect.zipRight(Deferred.await(gate), Ref.set(inRestore, 42))),
            Effect.zipRight(Ref.set(afterRestore, true))
          )
        ).pipe(Effect.either)
      )
      yield* manyTurns
      yield* Effect.either(runtime.run(() => runtime.crash))
      yield* Deferred.succeed(gate, undefined)
      yield* manyTurns
      expect(Either.isLeft(yield* Fiber.join(worker))).toBe(true)
      expect(yield* Ref.get(inRestore)).toBe(42)
      expect(yield* Ref.get(afterRestore)).toBe(false)
    }))

  it.effect("interrupting run (no crash) interrupts the effect and runs its finalizers", () =>
    Effect.gen(function*() {
      const runtime = yield* CrashableRuntime.make
      const finalized = yield* Ref.make(false)
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        runtime.run(() =>
          pipe(Deferred.succeed(started, undefined), Effect.zipRight(Effect.never), Effect.ensuring(Ref.set(finalized, true)))
        )
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(finalized)).toBe(true)
    }))

  it.effect("runWithCrash passes crash: Effect<never>", () =>
    Effect.gen(function*() {
      const reached = yield* Ref.make(false)
      const result = yield* CrashableRuntime.runWithCrash((crash: Effect.Effect<never>) =>
        Effect.zipRight(crash, Ref.set(reached, true))
      ).pipe(Effect.either)
      yield* manyTurns
      expect(Either.isLeft(result) && CrashableRuntime.isCrashableRuntimeCrashedError(result.left)).toBe(true)
      expect(yield* Ref.get(reached)).toBe(false)
    }))

  it.effect("retryWhileCrashes calls f again with a fresh runtime while it crashes", () =>
    Effect.gen(function*() {
      const runtimes: Array<CrashableRuntime.CrashableRuntime> = []
      const attempts = yield* Ref.make(0)
      const value = yield* CrashableRuntime.retryWhileCrashes((runtime) => {
        runtimes.push(runtime)
        return runtime.run(() =>
          Effect.flatMap(Ref.getAndUpdate(attempts, (n) => n + 1), (attempt) =>
            attempt < 3 ? Effect.zipRight(runtime.crash, Effect.die("unreachable")) : Effect.succeed(attempt))
        )
      })
      expect(value).toBe(3)
      expect(runtimes.length).toBe(4)
      expect(new Set(runtimes).size).toBe(4)
      // Its error type no longer mentions the crash: `string` only.
      const failing: Effect.Effect<never, string> = CrashableRuntime.retryWhileCrashes((runtime) =>
        runtime.run(() => Effect.fail("boom"))
      )
      expect(yield* Effect.flip(failing)).toBe("boom")
    }))
})
