/**
 * Engines made in one process on one journal share their default identity, and the journal grants a
 * claim to its own holder. Two engines of the same workflow in one process (two services of an app that
 * both register it) must still not both run one execution: a caller of the second engine leaves an
 * execution the first runs to the first, and has its result from the journal.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schedule, Schema } from "effect"
import { eventually } from "./utils/engine.js"
import { describeJournals } from "./utils/journals.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

/** Polls `predicate` every 10 ms (live clock) for at most 20 s. */
const waitFor = (predicate: () => boolean, what: string) =>
  Effect.timeoutFail(
    Effect.repeat(Effect.sync(predicate), { until: (held) => held, schedule: Schedule.spaced("10 millis") }),
    { duration: "20 seconds", onTimeout: () => new Error(`${what} never held`) }
  )

describeJournals("two engines of one workflow in one process", (journalCase) => {
  it.live("an execution running in one engine is not run again by the other's caller", () =>
    Effect.gen(function*() {
      const inner = Context.get(
        yield* Layer.build(Layer.fresh(journalCase.layer)),
        DurableExecutionJournal.DurableExecutionJournal
      )
      // reads of the execution's row, once the second engine's caller asks
      let counting = false
      let reads = 0
      const journal: DurableExecutionJournal.Journal = {
        ...inner,
        get: (key) => Effect.suspend(() => {
          if (counting) reads++
          return inner.get(key)
        })
      }
      const log = new RunLog()
      const hold = yield* Deferred.make<void>()
      let running = 0
      let overlap = 0
      const workflow = Workflow.make(Order, (order) =>
        recorded(log, "charge", order.amount, Schema.Number, {
          body: Effect.gen(function*() {
            running++
            if (running > 1) overlap++
            yield* Deferred.await(hold)
          }).pipe(Effect.ensuring(Effect.sync(() => {
            running--
          })))
        }))
      const provide = Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      const first = yield* provide(WorkflowEngine.make(workflow))
      const second = yield* provide(WorkflowEngine.make(workflow))
      expect(second.identity).toBe(first.identity)
      const a = yield* Effect.fork(first.execute(new Order({ orderId: "o1", amount: 1 })))
      yield* eventually(() => log.count("charge") === 1, "the first engine runs the body")
      counting = true
      const b = yield* Effect.fork(second.execute(new Order({ orderId: "o1", amount: 1 })))
      // the caller has started, read the row and polled it again (where it would resume an execution of
      // its identity that no engine of the process runs)
      yield* waitFor(() => reads >= 3 || log.count("charge") > 1, "the second caller polls")
      expect({ runs: log.count("charge"), overlap }).toEqual({ runs: 1, overlap: 0 })
      yield* Deferred.succeed(hold, undefined)
      expect(yield* Fiber.join(a)).toBe(1)
      // the second caller has the result from the journal
      expect(yield* Fiber.await(b)).toEqual(Exit.succeed(1))
      expect({ runs: log.count("charge"), overlap }).toEqual({ runs: 1, overlap: 0 })
    }).pipe(Effect.scoped), 60_000)
})
