/**
 * A caller awaiting a result keeps one journal poller for its whole wait, however often the execution
 * leaves this engine (suspends) and comes back while it waits: the pollers of earlier suspensions are not
 * left running beside a new one (each would read the journal once a second for as long as the caller
 * waits).
 */
import { DurableExecutionJournal } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer } from "effect"
import { keyString, Results } from "../src/internal/results.js"
import { eventually } from "./utils/engine.js"
import { key, memoryJournal } from "./utils/journals.js"

it.scoped("one journal poller per caller across many suspensions", () =>
  Effect.gen(function*() {
    const inner = Context.get(yield* Layer.build(Layer.fresh(memoryJournal)), DurableExecutionJournal.DurableExecutionJournal)
    const k = key("o1")
    // another engine runs it, with a claim far in the future: the poller only reads
    yield* inner.commit([{
      _tag: "Start",
      key: k,
      payload: "{}",
      payloadHash: "h",
      version: "v1",
      parent: null,
      owner: "other",
      claimUntil: Number.MAX_SAFE_INTEGER,
      now: 0
    }])
    // every read of the row waits at the gate: a poller is counted by its first read
    const gate = yield* Deferred.make<void>()
    let reads = 0
    const journal: DurableExecutionJournal.Journal = {
      ...inner,
      get: (key) => Effect.zipRight(Effect.zipRight(Effect.sync(() => reads++), Deferred.await(gate)), inner.get(key))
    }
    let live = true
    const results = new Results({
      journal,
      owner: "here",
      pollEvery: 1000,
      isLive: () => live,
      isRetrying: () => false,
      claimAndLaunch: () => Effect.succeed(false)
    })
    const id = keyString(k)
    const caller = yield* Effect.fork(results.await(k))
    yield* eventually(() => results.waiting === 1, "the caller waits")
    expect(reads).toBe(0) // running here: no poller
    for (let i = 0; i < 10; i++) {
      // the execution suspends (leaves this engine), the caller waits on; then it runs here again
      live = false
      results.release(id)
      yield* eventually(() => results.waiting === 1, `the caller waits again (${i})`)
      yield* eventually(() => reads >= 1, "the poller reads")
      for (let j = 0; j < 20; j++) yield* Effect.yieldNow()
      live = i % 2 === 0
    }
    expect(reads).toBe(1)
    results.succeed(id, "42")
    expect(yield* Fiber.join(caller)).toBe("42")
  }))
