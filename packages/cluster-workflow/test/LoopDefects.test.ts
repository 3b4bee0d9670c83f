/**
 * The engine's background loops survive a defect: a journal that throws where it should fail (a bug in
 * a driver or a wrapper) makes the loop log an error and start again, instead of the loop ending without a
 * word and the engine never waking a sleeper again.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, Schema, TestClock } from "effect"
import { awaitStatus, eventually } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { memoryJournal } from "./utils/journals.js"

it.scoped("a defect in the timer's journal read is logged, and the timer starts again: a sleeper still wakes", () =>
  Effect.gen(function*() {
    const inner = yield* Effect.provide(DurableExecutionJournal.DurableExecutionJournal, memoryJournal)
    let dieNext = false
    let died = 0
    let readsAfterDefect = 0
    const journal: DurableExecutionJournal.Journal = {
      ...inner,
      nextWakeAt: (...args) =>
        Effect.suspend(() => {
          if (dieNext) {
            dieNext = false
            died++
            return Effect.dieMessage("a bug in the journal (test)")
          }
          if (died > 0) readsAfterDefect++
          return inner.nextWakeAt(...args)
        })
    }
    const errors: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Error") errors.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const log = new RunLog()
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        yield* Workflow.sleep("wait", "1 minute")
        return yield* recorded(log, "after", order.amount, Schema.Number)
      }))
    const engine = yield* WorkflowEngine.makeScoped(workflow).pipe(
      Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
      Effect.provide(Logger.add(logger))
    )
    // The suspension arms the timer, whose next read of the stored deadlines throws.
    dieNext = true
    yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 4 }))
    yield* awaitStatus(engine, "o1", "Suspended")
    yield* eventually(() => died === 1 && readsAfterDefect > 0, "the timer read the deadlines again")
    expect(errors.some((text) => text.includes("the engine's timer stopped on an unexpected error"))).toBe(true)
    yield* TestClock.adjust("1 minute")
    expect(yield* engine.result("o1")).toEqual(Exit.succeed(4))
    expect(log.count("after")).toBe(1)
  }))
