/**
 * A new execution runs before its Start is committed, so that the Start and the first step's attempt
 * share one commit; a Start that finds its execution already there leaves nothing of that run behind.
 */
import { WorkflowError } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { countingJournal, withEngineOn } from "./utils/engine.js"
import { Order, RunLog, threeSteps } from "./utils/fixtures.js"
import { describeJournals, freshJournal, startedBy } from "./utils/journals.js"

describeJournals("Start folded into the first step's commit", (journalCase) => {
  it.scoped("a 3-activity workflow is 4 commits: the Start shares the first attempt's", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const { calls, journal } = countingJournal(yield* freshJournal(journalCase))
      yield* withEngineOn(journal, threeSteps(log), (engine) =>
        Effect.gen(function*() {
          const before = calls.commit ?? 0
          expect(yield* engine.send(new Order({ orderId: "o1", amount: 3 }))).toBe(307)
          // Start + attempt 1; result 1 + attempt 2; result 2 + attempt 3; result 3 + completion
          expect((calls.commit ?? 0) - before).toBe(4)
          expect(log.ids()).toEqual(["amount-o1", "charge", "ship"])
        }))
    }))

  it.scoped("a Start that finds its execution under this engine's own claim writes and runs nothing", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const key = { workflow: "Order", executionId: "o1" }
      // Left by an earlier engine of the same identity that crashed right after the Start: claimed by
      // "me" at epoch 1, no events, another payload. The new run's first attempt (under "me", epoch 1)
      // would pass the row's fence; it must not be applied, nor the activity run.
      yield* startedBy(journal, key, "me")
      yield* withEngineOn(journal, threeSteps(log), (engine) =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 3 })))
          // (`send` dies with it: the caller's message conflicts with the stored one)
          expect(exit).toEqual(Exit.die(new WorkflowError.PayloadMismatchError(key)))
          expect(log.ids()).toEqual([])
          expect(yield* journal.events(key, 0)).toEqual([])
          expect(yield* engine.liveExecutions).toBe(0)
        }), { identity: "me" })
    }))

  it.scoped("a Start that finds an execution another engine runs leaves it to that engine", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const key = { workflow: "Order", executionId: "o2" }
      yield* startedBy(journal, key, "other")
      const row = yield* journal.get(key)
      yield* withEngineOn(journal, threeSteps(log), (engine) =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o2", amount: 3 })))
          expect(Exit.isFailure(exit)).toBe(true)
          expect(log.ids()).toEqual([])
          expect(yield* journal.events(key, 0)).toEqual([])
          expect(yield* journal.get(key)).toEqual(row)
        }))
    }))
})
