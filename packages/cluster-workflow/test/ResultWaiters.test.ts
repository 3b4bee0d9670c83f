/**
 * A caller awaiting the result of an execution that runs on another engine leaves nothing behind (issue 9,
 * "correct only by luck"): answered through the journal, interrupted or timed out, its waiter is removed.
 * Before the fix every such wait left its entry in the engine's table of waiters for good.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Schema } from "effect"
import { enginesOf } from "../src/internal/engineShared.js"
import { eventually } from "./utils/engine.js"
import { describeJournals, freshJournal } from "./utils/journals.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

/** The executions that callers of these engines await (internal counter, for tests). */
const waiting = (journal: DurableExecutionJournal.Journal) =>
  Array.from(enginesOf(journal)).reduce((n, engine) => n + engine.results.waiting, 0)

describeJournals("results awaited from another engine", (journalCase) => {
  it.live("answered, interrupted or timed out, a caller removes its waiter", () =>
    Effect.gen(function*() {
      const journal = yield* freshJournal(journalCase)
      const log = new RunLog()
      const hold = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        recorded(log, "charge", 7, Schema.Number, { body: Deferred.await(hold) }))
      const make = (identity: string) =>
        WorkflowEngine.make(workflow, { identity, resultPollInterval: "20 millis" }).pipe(
          Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
        )
      const runner = yield* make("runner")
      const caller = yield* make("caller")
      const ids = Array.from({ length: 30 }, (_, i) => `o${i}`)
      for (const id of ids) yield* runner.start(new Order({ orderId: id, amount: 1 }))
      yield* eventually(() => log.count("charge") === ids.length, "every execution running on the runner")
      // Ten callers get their answer, ten are interrupted, ten time out; all wait on the other engine. The
      // first twenty are waiting before the timed-out ones start: a caller reads the journal before it waits,
      // and under load that read can take longer than the others' timeout.
      const answered = yield* Effect.forEach(ids.slice(20), (id) => Effect.fork(caller.result(id)))
      const interrupted = yield* Effect.forEach(ids.slice(0, 10), (id) => Effect.fork(caller.result(id)))
      yield* eventually(() => waiting(journal) === 20, "the callers waiting")
      const timedOut = yield* Effect.forEach(
        ids.slice(10, 20),
        (id) => Effect.fork(Effect.either(caller.result(id, { timeout: "50 millis" })))
      )
      yield* Effect.forEach(interrupted, Fiber.interrupt, { discard: true })
      for (const fiber of timedOut) expect(Either.isLeft(yield* Fiber.join(fiber))).toBe(true)
      expect(waiting(journal)).toEqual(10)
      yield* Deferred.succeed(hold, undefined)
      for (const fiber of answered) {
        const exit = yield* Fiber.join(fiber)
        expect(exit).toMatchObject({ _tag: "Success", value: 7 })
      }
      expect(waiting(journal)).toEqual(0)
      expect(log.count("charge")).toEqual(ids.length)
    }).pipe(Effect.scoped))
})
