/**
 * An execution whose only running activity finishes while its other branches wait durably (a timer, a
 * signal) never suspends: it stays in the engine's memory, holding its claim and renewing it, until the
 * wait ends (here: 30 days). docs/timers.md promises that once everything the execution waits on is
 * durable and nothing else of it runs, it is suspended and holds no memory.
 *
 * Why: the coordinator re-checks suspension (`CheckSuspend`) only when a step starts waiting
 * (`waitUntil`, `waitSignal`), after replay, and after a refused suspension. The end of an activity body
 * (`runBody` / `leaveBody`, internal/execution.ts) decrements `active` but sends no `CheckSuspend`, so a
 * check made while the body ran (refused: `active > 0`) is never repeated.
 */
import { Activity, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Schema } from "effect"
import { describeJournals } from "../utils/journals.js"
import { eventually, eventuallyEffect } from "../utils/engine.js"
import { Order } from "../utils/fixtures.js"

describeJournals("no suspension after the last running body", (journalCase) => {
  it.scoped("a 30-day sleep next to a finished activity keeps the execution in memory", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let started = false
      const work = Activity.make("work", Schema.Number, Schema.Never)(
        Effect.gen(function*() {
          started = true
          yield* Deferred.await(gate)
          return 1
        })
      )
      const workflow = Workflow.make(Order, () =>
        Effect.map(Effect.all([work, Workflow.sleep("cool-off", "30 days")], { concurrency: "unbounded" }), ([n]) => n))
      const engine = yield* WorkflowEngine.make(workflow)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => started, "activity started")
      yield* Deferred.succeed(gate, undefined)
      // (bounded wait: a SQL journal's commits take a while on a loaded machine)
      yield* eventuallyEffect(
        Effect.zip(engine.status("o1"), engine.liveExecutions),
        ([status, live]) => status._tag === "Suspended" && live === 0
      )
      const status = yield* engine.status("o1")
      // Actual: { status: "Running", live: 1 } until the 30 days are over.
      expect({ status: status._tag, live: yield* engine.liveExecutions }).toEqual({ status: "Suspended", live: 0 })
    }).pipe(Effect.provide(journalCase.layer)))
})
