/**
 * The liveness watch backs off while it cannot take an expired claim of another engine (the journal
 * refuses the claim while reads work), as the timer does: 50 ms doubling up to 5 s on the live clock.
 * Before the fix it remembered the expiry it had tried by the claim's end as read back, which a SQL
 * journal returns shifted by a millisecond or two at every read: it tried again at once, for ever.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Clock, Effect, Schedule, Schema } from "effect"
import { describeJournals, freshJournal, key, refusingClaims, start } from "./utils/journals.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

const tries = 6

describeJournals("the liveness watch's back-off", (journalCase) => {
  it.live("an expired claim that cannot be taken is tried again with back-off, then resumed once claims work", () =>
    Effect.gen(function*() {
      const inner = yield* freshJournal(journalCase)
      // live-clock instants of the refused claims; after `tries` of them, claims work again
      const { attempts, journal, refuse } = refusingClaims(inner, { refusals: tries, recordAfter: false })
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) => recorded(log, "charge", order.amount, Schema.Number))
      yield* WorkflowEngine.make(workflow, { identity: "B" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      refuse()
      // engine A (gone) left a running execution whose claim has ended
      const now = yield* Clock.currentTimeMillis
      yield* inner.commit([start(key("o1", "Order"), {
        payload: JSON.stringify({ _tag: "Order", orderId: "o1", amount: 1 }),
        payloadHash: "h",
        owner: "A",
        claimUntil: now - 1,
        now
      })])
      // the watch alone resumes it (nobody awaits it), after the refused tries
      yield* Effect.timeoutFail(
        Effect.repeat(Effect.sync(() => log.count("charge")), {
          until: (n) => n === 1,
          schedule: Schedule.spaced("20 millis")
        }),
        { duration: "30 seconds", onTimeout: () => new Error(`not resumed after ${attempts.length} refused claims`) }
      )
      expect(attempts.length).toBe(tries)
      // spaced by the back-off: 50, 100, 200, 400, 800 ms at least (before the fix: tries a few ms apart,
      // in bursts at every liveness check)
      const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!)
      gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(50 * 2 ** i - 5))
    }).pipe(Effect.scoped), 60_000)
})
