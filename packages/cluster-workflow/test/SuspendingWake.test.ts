/**
 * A change announced by another process (PostgreSQL: NOTIFY; SQLite: the data_version poll) while the
 * execution's runtime is leaving after its suspension committed: the runtime is still in the engine's live
 * map for a moment, no longer reads its inbox, and the announcement must not be handed to it (it would be
 * lost: nothing else wakes a suspended execution). The journal here stores a cancellation and announces it
 * right after the suspension's commit returns, before the runtime has left.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { awaitStatus } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { sharedSqlite, wrappingRegistrations } from "./utils/journals.js"

it.scopedLive("a cancellation announced while the suspended runtime is leaving still wakes the execution", () =>
  Effect.gen(function*() {
    const database = yield* sharedSqlite
    const inner = Context.get(yield* Layer.build(database.journal()), DurableExecutionJournal.DurableExecutionJournal)
    let onChange: ((key: DurableExecutionJournal.ExecutionKey | undefined) => void) | undefined
    let armed = false
    let announced = 0
    const journal: DurableExecutionJournal.Journal = {
      ...wrappingRegistrations(inner, (registration) =>
        Effect.succeed({
          ...registration,
          watchChanges: (callback) => {
            onChange = callback
            return registration.watchChanges?.(callback) ?? Effect.void
          }
        })),
      commit: (writes) =>
        Effect.flatMap(inner.commit(writes), (results) =>
          Effect.gen(function*() {
            const suspend = writes.findIndex((write) => write._tag === "Suspend")
            if (armed && suspend >= 0 && results[suspend]?._tag === "Ok") {
              armed = false
              // another process cancels the execution and announces it, before this commit's caller resumes
              const key = writes[suspend]!.key
              yield* inner.requestCancel(key, Date.now())
              announced++
              onChange?.(key)
            }
            return results
          }))
    }
    const log = new RunLog()
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        yield* recorded(log, "before", order.amount, Schema.Number)
        yield* Workflow.sleep("wait", "1 hour")
        return yield* recorded(log, "after", order.amount, Schema.Number)
      }))
    const engine = yield* WorkflowEngine.makeScoped(workflow).pipe(
      Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
    )
    armed = true
    yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 4 }))
    // (a bound that detects the lost wake-up: the next fallback look comes only at the lease's end, 30 s)
    yield* awaitStatus(engine, "o1", "Cancelled").pipe(
      Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the announced cancellation was lost") })
    )
    expect(announced).toBe(1)
    expect(log.count("after")).toBe(0)
  }))
