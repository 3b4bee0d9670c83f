/**
 * An execution stopped on its pod while the pod still serves its shard at the epoch it ran under (its
 * claim's renewal did not answer before its lease ended) is the pod's to run again: nobody else will, since
 * on the cluster only a shard's owner resumes its executions. Its ways back were single tries: the lease
 * end's take-back claims it once (a claim answered "unavailable" ended it), and the engine's periodic round
 * tried it once and dropped it the round after. With both tries refused (the row locked by another
 * transaction, a previous owner's claim met between the clearing and the claim: a loaded chaos run showed
 * one such execution left `running` for good), it stayed so. Now the round claims it again every time.
 *
 * But an execution whose start message no longer decodes (a newer journal format, a changed schema) is left
 * as it is: its claim fails to launch it and is logged once; the rounds must not claim it again every time
 * (a claim transaction on the shard's fence row and an error log each, for as long as the code cannot read
 * it). Pods in one process, SQLite file and PostgreSQL, live clock.
 */
import { DurableExecutionJournal, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Schema } from "effect"
import type * as Scope from "effect/Scope"
import { clusterDatabases, makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import type { SharedDatabase } from "./utils/journals.js"

type Claim = Effect.Effect<DurableExecutionJournal.ClaimResult, DurableExecutionJournal.JournalError>

/** The shared journal: renewals fail while `renewalsFail`; while `claimsAltered`, claims go through `alter`, counted. */
class Faulty {
  renewalsFail = false
  claimsAltered = false
  claims = 0
  constructor(private readonly alter: (claim: Claim, journal: DurableExecutionJournal.Journal, key: DurableExecutionJournal.ExecutionKey) => Claim) {}
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
    claim: (key, owner, now, claimUntil) => {
      const claim = journal.claim(key, owner, now, claimUntil)
      if (!this.claimsAltered) return claim
      this.claims++
      return this.alter(claim, journal, key)
    }
  })
  /** From now on its lease ends (renewals fail), and claims are altered. */
  fail() {
    this.claimsAltered = true
    this.renewalsFail = true
  }
}

/**
 * One pod (2 s claim leases, a shard check every 200 ms) running execution `id` of a workflow whose charge,
 * on its first run, waits for `gate`; returns once that charge has begun.
 */
const runningOnOnePod = (make: Effect.Effect<SharedDatabase, never, Scope.Scope>, journal: Faulty, id: string) =>
  Effect.gen(function*() {
    const log = new RunLog()
    const entered = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const body = Effect.suspend(() =>
      log.count("charge") === 1 ? Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(gate)) : Effect.void
    )
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        yield* recorded(log, "charge", order.amount, Schema.Number, { body })
        return order.amount
      }))
    const { startPod } = yield* makeEngineCluster(yield* make, workflow, {
      shardCheckInterval: "200 millis",
      claimLease: "2 seconds",
      journalView: journal.view
    })
    const pod = yield* startPod(1)
    yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
    yield* pod.engine.start(new Order({ orderId: id, amount: 5 }))
    yield* Deferred.await(entered)
    return { pod, log, gate }
  })

for (const { make, name, skip } of clusterDatabases) describe.skipIf(skip !== undefined)(`an execution stopped at its lease's end on a pod serving its shard [${name}]`, () => {
  it.scopedLive("runs again there once its claims are granted, though the first several were refused", () =>
    Effect.gen(function*() {
      const journal = new Faulty((_, inner, key) =>
        Effect.map(inner.get(key), (row): DurableExecutionJournal.ClaimResult => ({
          _tag: "Unavailable",
          row: row._tag === "Some" ? row.value : undefined
        }))
      )
      const { gate, log, pod } = yield* runningOnOnePod(make, journal, "l1")
      journal.fail()
      // Refused far more often than the two tries the execution had before (the lease end's and one round's):
      // the pod keeps trying while the execution is running in a shard it serves.
      yield* until(Effect.sync(() => journal.claims >= 6))
      expect(log.count("charge")).toBe(1)
      journal.renewalsFail = false
      journal.claimsAltered = false
      yield* Deferred.succeed(gate, undefined)
      expect(yield* pod.engine.result("l1")).toEqual(Exit.succeed(5))
      // run again here (the first run's charge was cut off at the lease's end)
      expect(log.count("charge")).toBe(2)
    }), 60_000)

  it.scopedLive("is not claimed again at every shard check when its start message no longer decodes", () =>
    Effect.gen(function*() {
      // every claim reads a start message that does not decode
      const journal = new Faulty((claim) =>
        Effect.map(claim, (result) =>
          result._tag === "Claimed" ? { ...result, row: { ...result.row, payload: "{not json" } } : result)
      )
      yield* runningOnOnePod(make, journal, "u1")
      journal.fail()
      yield* until(Effect.sync(() => journal.claims >= 1))
      journal.renewalsFail = false
      // ~15 shard checks: one claim at the lease's end, at most a round's look after it (as before)
      yield* Effect.sleep("3 seconds")
      expect(journal.claims).toBeLessThanOrEqual(3)
    }), 60_000)
})
