/**
 * An execution whose start message no longer decodes (a newer journal format, a changed schema) is left as
 * it is: its claim fails to launch and is logged once. The engine's periodic take-back of runs that left
 * it must not claim it again at every shard check (a claim transaction on the shard's fence row and an
 * error log every round, for as long as the code cannot read it).
 */
import { DurableExecutionJournal, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Schema } from "effect"
import { clusterDatabases, makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

/** The shared journal, its renewals failing while switched on, and its claims answering an unreadable row. */
class Unreadable {
  renewalsFail = false
  unreadable = false
  claims = 0
  readonly view = (journal: DurableExecutionJournal.Journal): DurableExecutionJournal.Journal => ({
    ...journal,
    renew: (owner, claims, claimUntil) =>
      this.renewalsFail
        ? Effect.fail(new DurableExecutionJournal.JournalError({
          operation: "renew",
          message: "the database does not answer",
          retryable: true
        }))
        : journal.renew(owner, claims, claimUntil),
    claim: (key, owner, now, claimUntil) =>
      Effect.map(journal.claim(key, owner, now, claimUntil), (result): DurableExecutionJournal.ClaimResult => {
        if (!this.unreadable) return result
        this.claims++
        return result._tag === "Claimed" ? { ...result, row: { ...result.row, payload: "{not json" } } : result
      })
  })
}

for (const { make, name, skip } of clusterDatabases) describe.skipIf(skip !== undefined)(`an execution whose start message no longer decodes [${name}]`, () => {
  it.scopedLive("is not claimed again at every shard check", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = new Unreadable()
      const entered = yield* Deferred.make<void>()
      const body = Effect.suspend(() =>
        log.count("charge") === 1 ? Effect.zipRight(Deferred.succeed(entered, undefined), Effect.never) : Effect.void
      )
      const workflow = Workflow.make(Order, (order) =>
        Effect.gen(function*() {
          yield* recorded(log, "charge", order.amount, Schema.Number, { body })
          return order.amount
        }))
      const db = yield* make
      const { startPod } = yield* makeEngineCluster(db, workflow, {
        shardCheckInterval: "200 millis",
        claimLease: "2 seconds",
        journalView: journal.view
      })
      const pod = yield* startPod(1)
      yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
      yield* pod.engine.start(new Order({ orderId: "u1", amount: 5 }))
      yield* Deferred.await(entered)
      // its lease ends (renewals fail); from then on every claim reads a start message that does not decode
      journal.unreadable = true
      journal.renewalsFail = true
      yield* until(Effect.sync(() => journal.claims >= 1))
      journal.renewalsFail = false
      // ~15 shard checks: one claim at the lease's end, at most a round's look after it (as before)
      yield* Effect.sleep("3 seconds")
      expect(journal.claims).toBeLessThanOrEqual(3)
    }), 60_000)
})
