import { DurableExecutionJournal, DurableExecutionJournalInMemory, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Schema } from "effect"
import { eventually, eventuallyEffect } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

it.live("an execution stopped by a journal outage runs again once the journal is back (nobody awaiting it, no restart)", () =>
  Effect.gen(function*() {
    const inner = yield* DurableExecutionJournalInMemory.make
    let down = false
    const reclaimed = yield* Deferred.make<void>()
    const journal: DurableExecutionJournal.Journal = {
      ...inner,
      commit: (writes) =>
        Effect.suspend(() =>
          down
            ? Effect.fail(new DurableExecutionJournal.JournalError({ operation: "commit", message: "down", retryable: true }))
            : inner.commit(writes)
        ),
      // the engine takes its own execution back once the journal answers again
      claim: (...args) => Effect.zipLeft(inner.claim(...args), down ? Effect.void : Deferred.succeed(reclaimed, undefined))
    }
    const log = new RunLog()
    const gate = yield* Deferred.make<void>()
    const workflow = Workflow.make(Order, () =>
      Effect.gen(function*() {
        yield* recorded(log, "a", 1, Schema.Number, { body: Deferred.await(gate) })
        return yield* recorded(log, "b", 2, Schema.Number)
      }))
    const engine = yield* WorkflowEngine.make(workflow, { journalRetries: 1 }).pipe(
      Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
    )
    yield* engine.start(new Order({ orderId: "o1", amount: 1 }))
    yield* eventually(() => log.count("a") === 1)
    down = true // the database goes down while "a" runs: its result cannot be recorded
    yield* Deferred.succeed(gate, undefined)
    yield* eventuallyEffect(engine.liveExecutions, (n) => n === 0)
    down = false // the database is back
    yield* Deferred.await(reclaimed)
    expect(yield* engine.result("o1")).toEqual(Exit.succeed(2))
    // "a" ran again (its result was lost with the outage); "b" once
    expect(log.ids()).toEqual(["a", "a", "b"])
  }).pipe(Effect.scoped))
