import {
  Activity,
  DurableExecutionJournal,
  Workflow,
  WorkflowEngine,
  WorkflowError
} from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Option, Schema } from "effect"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { eventually, eventuallyEffect } from "./utils/engine.js"
import { describeJournals, freshJournal, journalCases } from "./utils/journals.js"

type Journal = DurableExecutionJournal.Journal

/** A journal whose commits fail `times` times with the given error before reaching `inner`. */
const failingCommits = (inner: Journal, times: number, retryable: boolean) => {
  let failures = 0
  const journal: Journal = {
    ...inner,
    commit: (writes) =>
      Effect.suspend(() => {
        if (failures < times) {
          failures++
          return Effect.fail(
            new DurableExecutionJournal.JournalError({ operation: "commit", message: "connection lost", retryable })
          )
        }
        return inner.commit(writes)
      })
  }
  return { journal, failures: () => failures }
}

describeJournals("Journal failures", (journalCase) => {
  it.scoped("retries a commit that failed with a retryable error, losing and duplicating nothing", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const { failures, journal } = failingCommits(inner, 3, true)
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          const a = yield* recorded(log, "a", 1, Schema.Number)
          const b = yield* recorded(log, "b", 2, Schema.Number)
          return a + b
        }))
      const engine = yield* WorkflowEngine.makeScoped(workflow).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(3)
      expect(failures()).toBe(3)
      expect(log.ids()).toEqual(["a", "b"])
      const events = yield* inner.events({ workflow: "Order", executionId: "o1" }, 0)
      expect(events.map((e) => `${e.kind}:${e.stepId}`)).toEqual([
        "StepStarted:a",
        "StepCompleted:a",
        "StepStarted:b",
        "StepCompleted:b",
        "ExecutionCompleted:"
      ])
    }))

  it.scoped("surfaces a journal that stays down: typed on execute, a tagged defect on send", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const { journal } = failingCommits(inner, Number.MAX_SAFE_INTEGER, false)
      const workflow = Workflow.make(Order, () => recorded(log, "a", 1, Schema.Number))
      const engine = yield* WorkflowEngine.make(workflow, { journalRetries: 2 }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      const typed = yield* Effect.flip(engine.execute(new Order({ orderId: "o1", amount: 1 })))
      expect(typed).toBeInstanceOf(DurableExecutionJournal.JournalError)
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o2", amount: 1 })))
      assert(Exit.isFailure(exit))
      const defect = Cause.dieOption(exit.cause)
      assert(Option.isSome(defect))
      expect(WorkflowError.isWorkflowEngineError(defect.value)).toBe(true)
      expect(log.runs.length).toBe(0)
      expect(Option.isNone(yield* inner.get({ workflow: "Order", executionId: "o1" }))).toBe(true)
    }))
})

describeJournals("Journal format", (journalCase) => {
  it.scoped("leaves an execution written by a newer journal format alone, with a typed error", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* freshJournal(journalCase)
      const workflow = Workflow.make(Order, () =>
        Effect.zipRight(recorded(log, "a", 1, Schema.Number), Workflow.yieldExecution))
      const first = yield* WorkflowEngine.makeScoped(workflow).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, inner)
      )
      yield* first.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventuallyEffect(Effect.orDie(Effect.map(first.status("o1"), (s) => s._tag)), (tag) => tag === "Suspended")
      // a newer release would write a higher format version: this engine must not interpret it
      const newer: Journal = {
        ...inner,
        claim: (...args) =>
          Effect.map(inner.claim(...args), (result) =>
            result._tag === "Claimed" ? { ...result, row: { ...result.row, formatVersion: 99 } } : result)
      }
      const engine = yield* WorkflowEngine.make(workflow, { identity: "older-engine" }).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, newer)
      )
      const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 1 })))
      assert(Exit.isFailure(exit))
      const defect = Cause.dieOption(exit.cause)
      assert(Option.isSome(defect) && defect.value instanceof WorkflowError.PayloadDecodeError)
      expect(defect.value.reason).toContain("format 99")
      expect(log.count("a")).toBe(1)
    }))
}, journalCases.filter((journalCase) => journalCase.name === "memory"))

/** The SQL cases only: transactional activities need the journal's SqlClient. */
describeJournals("Transactional activities", (journalCase) => {
  const sqlLayer = journalCase.sqlLayer!
  const charge = (orderId: string) =>
    Activity.make("charge", Schema.Number, Schema.String)(
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO tx_side (order_id) VALUES (${orderId})`
        const rows = yield* sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM tx_side WHERE order_id = ${orderId}`
        return Number(rows[0]!.n)
      }).pipe(Effect.orDie)
    ).pipe(Activity.transactional)

  it.scoped("commits the body's writes and the recorded result together", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE IF NOT EXISTS tx_side (order_id TEXT NOT NULL)`
      yield* sql`DELETE FROM tx_side`
      const workflow = Workflow.make(Order, (order) => charge(order.orderId))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(1)
      expect(yield* engine.send(new Order({ orderId: "o1", amount: 1 }))).toBe(1)
      const rows = yield* sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM tx_side`
      expect(Number(rows[0]!.n)).toBe(1)
      yield* sql`DROP TABLE tx_side`
    }).pipe(Effect.provide(sqlLayer)))

  it.scoped("rolls the body's writes back when its result cannot be recorded (claim lost meanwhile)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE IF NOT EXISTS tx_side (order_id TEXT NOT NULL)`
      yield* sql`DELETE FROM tx_side`
      const inner = yield* DurableExecutionJournal.DurableExecutionJournal
      let bodyRan = false
      // while the body runs, another engine takes the execution over (its claim bumps the epoch)
      const stolen = Activity.make("charge", Schema.Number, Schema.String)(
        Effect.gen(function*() {
          bodyRan = true
          yield* sql`INSERT INTO tx_side (order_id) VALUES (${"o1"})`
          yield* inner.claim({ workflow: "Order", executionId: "o1" }, "thief", 8e15, 9e15)
          return 1
        }).pipe(Effect.orDie)
      ).pipe(Activity.transactional)
      const engine = yield* WorkflowEngine.makeScoped(Workflow.make(Order, () => stolen))
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => bodyRan)
      yield* eventuallyEffect(engine.liveExecutions, (n) => n === 0)
      const rows = yield* sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM tx_side`
      expect(Number(rows[0]!.n)).toBe(0)
      const events = yield* inner.events({ workflow: "Order", executionId: "o1" }, 0)
      expect(events.filter((e) => e.kind === "StepCompleted")).toEqual([])
      yield* sql`DROP TABLE tx_side`
    }).pipe(Effect.provide(sqlLayer)))
}, journalCases.filter((journalCase) => journalCase.sqlLayer !== undefined))

describeJournals("Transactional activities on a non-SQL journal", (journalCase) => {
  it.scoped("are refused with a usage error", () =>
    Effect.gen(function*() {
      const workflow = Workflow.make(Order, () =>
        Activity.make("tx", Schema.Number, Schema.String)(Effect.succeed(1)).pipe(Activity.transactional))
      const engine = yield* WorkflowEngine.makeScoped(workflow)
      const error = yield* Effect.flip(engine.execute(new Order({ orderId: "o1", amount: 1 })))
      expect(error).toBeInstanceOf(WorkflowError.WorkflowUsageError)
    }).pipe(Effect.provide(Layer.merge(journalCase.layer, Layer.empty))))
}, journalCases.filter((journalCase) => journalCase.name === "memory"))
