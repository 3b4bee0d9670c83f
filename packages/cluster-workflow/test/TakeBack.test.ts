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
 * it). And one whose row another session keeps locked is left to the engine's background claims of locked
 * rows while the lock lasts, not probed again (about 155 ms on PostgreSQL) at every shard check. Pods in one
 * process, SQLite file and PostgreSQL, live clock.
 */
import { DurableExecutionJournal, DurableExecutionJournalSql, Workflow } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Schema } from "effect"
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
    const db = yield* make
    const { startPod } = yield* makeEngineCluster(db, workflow, {
      shardCheckInterval: "200 millis",
      claimLease: "2 seconds",
      journalView: journal.view
    })
    const pod = yield* startPod(1)
    yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
    yield* pod.engine.start(new Order({ orderId: id, amount: 5 }))
    yield* Deferred.await(entered)
    return { pod, log, gate, db }
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

describe.skipIf(clusterDatabases[1]!.skip !== undefined)("an execution stopped at its lease's end whose row another session locks [postgres]", () => {
  it.scopedLive("is left to its background claim while the lock lasts, not probed at every shard check, and runs once it ends", () =>
    Effect.gen(function*() {
      const journal = new Faulty((claim) => claim)
      const { db, gate, pod } = yield* runningOnOnePod(clusterDatabases[1]!.make, journal, "k1")
      // another session locks the execution's row in an open transaction
      const other = Context.get(yield* Layer.build(db.journal()), SqlClient.SqlClient)
      const E = other((yield* DurableExecutionJournalSql.tableNames(db.prefix)).executions)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${E} WHERE execution_id = 'k1' FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      // its lease ends (renewals fail): it stops, and its claims meet the lock
      journal.renewalsFail = true
      yield* until(Effect.sync(() => pod.reads.count >= 2))
      // (the background claim's first tries are 100 ms doubling: let them space out)
      yield* Effect.sleep("3 seconds")
      const before = pod.reads.count
      // ~10 shard checks, each of which read the row and probed its lock before (2 reads a round)
      yield* Effect.sleep("2 seconds")
      expect(pod.reads.count - before).toBeLessThanOrEqual(4)
      journal.renewalsFail = false
      yield* Deferred.succeed(gate, undefined)
      yield* Deferred.succeed(unlock, undefined)
      yield* Effect.asVoid(Effect.exit(holder.await))
      expect(yield* pod.engine.result("k1")).toEqual(Exit.succeed(5))
    }), 60_000)
})
