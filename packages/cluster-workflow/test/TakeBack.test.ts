/**
 * An execution stopped on its pod while the pod still serves its shard at the epoch it ran under (its
 * claim's renewal did not answer before its lease ended) is the pod's to run again: nobody else will, since
 * on the cluster only a shard's owner resumes its executions. Its ways back were single tries: the lease
 * end's take-back claims it once (a claim answered "unavailable" ended it), and the engine's periodic round
 * tried it once and dropped it the round after. With both tries refused (the row locked by another
 * transaction, a previous owner's claim met between the clearing and the claim: a loaded chaos run showed
 * one such execution left `running` for good), it stayed so. Here the journal refuses the first claims;
 * the execution must run again once claims are granted. Pods in one process, SQLite file and PostgreSQL,
 * live clock.
 */
import { DurableExecutionJournal, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Option, Schema } from "effect"
import { clusterDatabases, makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

/** The shared journal, its renewals failing and its claims refused (counted) while switched on. */
class Refusing {
  renewalsFail = false
  claimsRefused = false
  refused = 0
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
      this.claimsRefused
        ? Effect.map(journal.get(key), (row): DurableExecutionJournal.ClaimResult => {
          this.refused++
          return { _tag: "Unavailable", row: Option.getOrUndefined(row) }
        })
        : journal.claim(key, owner, now, claimUntil)
  })
}

for (const { make, name, skip } of clusterDatabases) describe.skipIf(skip !== undefined)(`an execution stopped at its lease's end on a pod serving its shard [${name}]`, () => {
  it.scopedLive("runs again there once its claims are granted, though the first several were refused", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = new Refusing()
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      // (the first run's charge waits until the test lets it go; it is cut off when the lease ends)
      const body = Effect.suspend(() =>
        log.count("charge") === 1 ? Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(gate)) : Effect.void
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
      yield* pod.engine.start(new Order({ orderId: "l1", amount: 5 }))
      yield* Deferred.await(entered)
      journal.claimsRefused = true
      journal.renewalsFail = true
      // Refused far more often than the two tries the execution had before (the lease end's and one round's):
      // the pod keeps trying while the execution is running in a shard it serves.
      yield* until(Effect.sync(() => journal.refused >= 6))
      expect(log.count("charge")).toBe(1)
      journal.renewalsFail = false
      journal.claimsRefused = false
      yield* Deferred.succeed(gate, undefined)
      expect(yield* pod.engine.result("l1")).toEqual(Exit.succeed(5))
      // run again here (the first run's charge was cut off at the lease's end)
      expect(log.count("charge")).toBe(2)
    }), 60_000)
})
