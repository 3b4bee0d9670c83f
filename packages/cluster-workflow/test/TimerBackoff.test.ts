/**
 * The timer backs off while claiming due executions fails and reading them works (issue 9, "correct only
 * by luck"). Before the fix the stored deadline stayed in the past, so the timer read the due executions
 * and tried to claim them again at once, for ever: thousands of claims a second, each logged.
 *
 * Now it waits on the live clock between rounds (50 ms, doubling up to 5 s), logs one warning for the
 * whole run of failures, and resumes the execution in the first round whose claim works.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, Schema, TestClock } from "effect"
import { awaitStatus, eventuallyEffect } from "./utils/engine.js"
import { describeJournals, freshJournal, refusingClaims } from "./utils/journals.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

const failures = 5

describeJournals("timer back-off while claims fail", (journalCase) => {
  it.scoped("claims of a due execution are retried with back-off, logged once, and it resumes once they work", () =>
    Effect.gen(function*() {
      const inner = yield* freshJournal(journalCase)
      // live-clock instants of the claim attempts; the first `failures` are refused (reads keep working)
      const { attempts, journal, refuse } = refusingClaims(inner, { refusals: failures, recordAfter: true })
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        const text = Array.isArray(message) ? message.join(" ") : String(message)
        if (logLevel._tag === "Warning" && text.includes("claim due executions")) warnings.push(text)
      })
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          yield* Workflow.sleep("wait", "1 minute")
          return yield* recorded(log, "after", order.amount, Schema.Number)
        }))
      yield* Effect.gen(function*() {
        const engine = yield* WorkflowEngine.makeScoped(workflow)
        yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 4 }))
        yield* awaitStatus(engine, "o1", "Suspended")
        yield* eventuallyEffect(engine.liveExecutions, (n) => n === 0)
        refuse()
        yield* TestClock.adjust("1 minute")
        // The timer's claims fail five times, then work: the execution resumes.
        expect(yield* engine.result("o1")).toEqual(Exit.succeed(4))
      }).pipe(
        Effect.scoped,
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
        Effect.provide(Logger.add(logger))
      )
      expect(log.count("after")).toBe(1)
      // one attempt per round: five refused, the sixth claimed it
      expect(attempts.length).toBe(failures + 1)
      // spaced by the back-off (live clock): 50, 100, 200, 400, 800 ms at least
      const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!)
      gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(50 * 2 ** i - 5))
      // within the first 100 ms of refusals, at most two attempts (the first and the one 50 ms later)
      expect(attempts.filter((at) => at - attempts[0]! < 100).length).toBeLessThanOrEqual(2)
      expect(warnings).toHaveLength(1)
    }))
})
