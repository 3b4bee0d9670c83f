/**
 * Attacks on the in-process engine's background claim of a locked row (`claimOrRetryLater`), PostgreSQL:
 * two engines on one journal, and an engine that shuts down while its background claim waits.
 */
import { DurableExecutionJournal, DurableExecutionJournalSql, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Logger, Schema, Scope } from "effect"
import { awaitStatus, countingJournal } from "./utils/engine.js"
import { until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { postgresSkipReason, sharedPostgres } from "./utils/journals.js"

const setup = Effect.gen(function*() {
  const shared = yield* sharedPostgres
  const journal = Context.get(yield* Layer.build(shared.journal()), DurableExecutionJournal.DurableExecutionJournal)
  const other = Context.get(yield* Layer.build(shared.journal()), SqlClient.SqlClient)
  const E = other((yield* DurableExecutionJournalSql.tableNames(shared.prefix)).executions)
  const lockRow = (executionId: string) =>
    Effect.gen(function*() {
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${E} WHERE execution_id = ${executionId} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      return Effect.zipRight(Deferred.succeed(unlock, undefined), Fiber.join(holder))
    })
  const claimOwner = (executionId: string) =>
    Effect.map(
      other<{ claim_owner: string | null }>`SELECT claim_owner FROM ${E} WHERE execution_id = ${executionId}`,
      (rows) => rows[0]?.claim_owner ?? null
    )
  const errors: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Error" || logLevel._tag === "Warning") {
      errors.push(Array.isArray(message) ? message.join(" ") : String(message))
    }
  })
  return { journal, lockRow, claimOwner, errors, logger }
})

/** A workflow whose one activity counts its runs by engine and waits for `free`. */
const blockingWorkflow = (free: Deferred.Deferred<void>, runs: Array<string>) =>
  Workflow.make(Order, (order) =>
    recorded(new RunLog(), "charge", order.amount, Schema.Number, {
      body: Effect.zipRight(Effect.sync(() => runs.push(order.orderId)), Deferred.await(free))
    }))

/**
 * Engine X starts o1 and shuts down while its activity runs (o1 is left running, its claim released); the
 * activity's runs so far (o1 once), to which later engines of `blockingWorkflow` add theirs.
 */
const leftRunningByX = (journal: DurableExecutionJournal.Journal) =>
  Effect.gen(function*() {
    const runs: Array<string> = []
    const never = yield* Deferred.make<void>()
    yield* Effect.scoped(Effect.gen(function*() {
      const x = yield* WorkflowEngine.make(blockingWorkflow(never, runs), { identity: "X" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* x.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* until(Effect.sync(() => runs.length === 1))
    }))
    return runs
  })

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL: background claims of a locked row", () => {
  // A's start meets the lock and retries in the background (every 5 s by then); the lock ends and B claims
  // and runs the execution: A's next background claim must find B's claim and stop, not run it again.
  it.live("an engine's background claim does not run an execution another engine claimed meanwhile", () =>
    Effect.gen(function*() {
      const { claimOwner, journal, lockRow } = yield* setup
      // Engine X starts o1 and shuts down while its activity runs: o1 is left running, its claim released.
      const runs = yield* leftRunningByX(journal)
      const free = yield* Deferred.make<void>()
      const counted = countingJournal(journal)
      const outcomes: Array<string> = []
      const claimsOfA: DurableExecutionJournal.Journal = {
        ...counted.journal,
        claim: (...args) =>
          counted.journal.claim(...args).pipe(
            Effect.tapBoth({
              onFailure: (error) => Effect.sync(() => outcomes.push(error.message)),
              onSuccess: (result) => Effect.sync(() => outcomes.push(result._tag))
            })
          )
      }
      const a = yield* WorkflowEngine.make(blockingWorkflow(free, runs), { identity: "A", resumeOnStart: false }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, claimsOfA)
      )
      const b = yield* WorkflowEngine.make(blockingWorkflow(free, runs), { identity: "B", resumeOnStart: false }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      const unlock = yield* lockRow("o1")
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      // A's background claims back off to every 5 s (100 + 200 + ... + 3200 ms = 6.3 s)
      // and one has just failed on the lock (the next is 5 s away)
      yield* until(
        Effect.sync(() => outcomes.length >= 7 && outcomes.length === counted.calls.claim),
        "20 seconds"
      )
      expect(outcomes.at(-1)).toContain("locked")
      yield* unlock
      // B claims o1 right after the lock ends, before A's next background claim
      yield* b.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* until(Effect.sync(() => runs.length === 2))
      expect(yield* claimOwner("o1")).toBe("B")
      // A's background claim (in flight at the unlock, or the next one) finds B's claim and stops
      yield* until(Effect.sync(() => outcomes.at(-1) === "Unavailable"), "10 seconds")
      // A's background claim found B's claim: o1 runs once, on B
      yield* Deferred.succeed(free, undefined)
      yield* awaitStatus(b, "o1", "Completed")
      expect(runs).toEqual(["o1", "o1"])
      expect(yield* claimOwner("o1")).toBe(null)
    }).pipe(Effect.scoped), 60_000)

  // The engine shuts down while its background claim waits: the shutdown does not wait for it, logs
  // nothing, and no claim is taken after it (another engine runs the execution at once once the lock ends).
  it.live("an engine that shuts down during a background claim leaves no claim behind", () =>
    Effect.gen(function*() {
      const { claimOwner, errors, journal, lockRow, logger } = yield* setup
      const runs = yield* leftRunningByX(journal)
      const free = yield* Deferred.make<void>()
      yield* Deferred.succeed(free, undefined)
      const counted = countingJournal(journal)
      const scope = yield* Scope.make()
      const a = yield* WorkflowEngine.make(blockingWorkflow(free, runs), { identity: "A", resumeOnStart: false }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, counted.journal),
        Effect.provide(Logger.add(logger)),
        Scope.extend(scope)
      )
      const unlock = yield* lockRow("o1")
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      // during a background claim (its second attempt, 300 ms after the start's)
      yield* until(Effect.sync(() => (counted.calls.claim ?? 0) >= 3))
      const closed = yield* Effect.timeout(Scope.close(scope, Exit.void), "5 seconds")
      expect(closed).toBeUndefined()
      const claimsAtClose = counted.calls.claim ?? 0
      yield* unlock
      const c = yield* WorkflowEngine.make(blockingWorkflow(free, runs), { identity: "C" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      yield* Effect.timeout(awaitStatus(c, "o1", "Completed"), "10 seconds")
      expect(runs).toEqual(["o1", "o1"])
      expect(counted.calls.claim ?? 0).toBe(claimsAtClose)
      expect(yield* claimOwner("o1")).toBe(null)
      expect(errors).toEqual([])
    }).pipe(Effect.scoped), 60_000)
})
