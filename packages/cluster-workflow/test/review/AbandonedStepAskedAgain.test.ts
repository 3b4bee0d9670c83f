/**
 * An activity (or timer) whose first request was abandoned (a race's loser, or the step wrapped by a
 * `Workflow.timeout` that fired) hangs the workflow for ever when the workflow asks for the same step id
 * again, e.g. "try to charge within a minute, otherwise try once more".
 *
 * Why: `ExecutionRuntime.requestNow` (internal/execution.ts) returns the existing step with
 * `first: false` for any id already registered, and `runActivity` then awaits `step.done`. An abandoned
 * step never gets a result (its body was interrupted and nothing is recorded), so `step.done` is never
 * completed: the second request waits for ever, the execution sits in memory holding its claim, and
 * `result` never returns. Docs (activities.md) say the second request "gets the first one's recorded
 * result"; there is none, so it should run the activity (next attempt), as the 2024 journal did.
 *
 * The same holds for a signal wait: the common "wait 2 days for approval, send a reminder, then wait for
 * approval again" waits for ever, even after the signal arrives (the abandoned step is no longer in
 * `waiting`, so `receiveSignal` completes nothing, and the execution cannot suspend either).
 */
import { Activity, DurableDeferred, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Schema, TestClock } from "effect"
import { describeJournals } from "../utils/journals.js"
import { awaitStatus, eventually, eventuallyEffect, ioTurn } from "../utils/engine.js"
import { Order } from "../utils/fixtures.js"

/**
 * A lease longer than the TestClock jumps below: a jump past the lease looks like a frozen process to the
 * lease watchdog (issue 9 #11), which would stop the live execution as ClaimLost.
 */
const longLease = { claimLease: "30 days" } as const

describeJournals("abandoned step asked for again", (journalCase) => {
  it.scoped("retrying an activity after its Workflow.timeout fired never completes", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      // the first attempt hangs (a slow partner); later attempts answer at once
      const charge = Activity.make("charge", Schema.String, Schema.Never)(
        Effect.gen(function*() {
          const attempt = yield* Activity.currentAttempt
          attempts.push(attempt)
          if (attempt === 0) return yield* Effect.never
          return `charged (attempt ${attempt})`
        })
      )
      const workflow = Workflow.make(Order, () =>
        Workflow.timeout("charge-window", "1 minute")(charge).pipe(
          Effect.catchTag("TimeoutException", () => charge)
        ).pipe(Effect.map((s) => s.length)))
      const engine = yield* WorkflowEngine.make(workflow, longLease)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* eventually(() => attempts.length === 1, "first attempt started")
      yield* TestClock.adjust("1 minute")
      for (let i = 0; i < 200; i++) yield* ioTurn
      yield* TestClock.adjust("10 minutes")
      for (let i = 0; i < 200; i++) yield* ioTurn
      // (bounded wait: a SQL journal's commits take a while on a loaded machine)
      yield* eventuallyEffect(
        Effect.zip(engine.status("o1"), engine.liveExecutions),
        ([status, live]) => status._tag === "Completed" && live === 0
      )
      const status = yield* engine.status("o1")
      // Actual: { _tag: "Running" } for ever, attempts [0], one live execution holding its claim.
      expect({ status: status._tag, attempts, live: yield* engine.liveExecutions }).toEqual({
        status: "Completed",
        attempts: [0, 1],
        live: 0
      })
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("asking again for a race's loser never completes", () =>
    Effect.gen(function*() {
      const slow = Activity.make("slow", Schema.String, Schema.Never)(
        Effect.flatMap(Activity.currentAttempt, (attempt) => attempt === 0 ? Effect.never : Effect.succeed("slow")))
      const fast = Activity.make("fast", Schema.String, Schema.Never)(Effect.succeed("fast"))
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          const first = yield* Effect.race(slow, fast)
          const second = yield* slow // now wait for the loser too
          return (first + second).length
        }))
      const engine = yield* WorkflowEngine.make(workflow, longLease)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      for (let i = 0; i < 200; i++) yield* ioTurn
      yield* TestClock.adjust("10 minutes")
      for (let i = 0; i < 200; i++) yield* ioTurn
      yield* awaitStatus(engine, "o1", "Completed")
      // Actual: { _tag: "Running" } for ever.
      expect((yield* engine.status("o1"))._tag).toBe("Completed")
    }).pipe(Effect.provide(journalCase.layer)))

  it.scoped("waiting again for a signal after a timed-out wait never completes, even when it arrives", () =>
    Effect.gen(function*() {
      const Approval = DurableDeferred.make("approval", { success: Schema.String })
      const reminders: Array<string> = []
      const remind = Activity.make("remind", Schema.Void, Schema.Never)(Effect.sync(() => void reminders.push("sent")))
      const workflow = Workflow.make(Order, () =>
        Effect.gen(function*() {
          const first = yield* Workflow.timeout("approval-window", "2 days")(DurableDeferred.await(Approval)).pipe(
            Effect.catchTag("TimeoutException", () => Effect.succeed(undefined))
          )
          if (first !== undefined) return first.length
          yield* remind
          return (yield* DurableDeferred.await(Approval)).length
        }))
      const engine = yield* WorkflowEngine.make(workflow, longLease)
      yield* engine.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      // (the deadline is journaled before the execution suspends: a SQL journal's commits take a while)
      yield* awaitStatus(engine, "o1", "Suspended")
      yield* TestClock.adjust("2 days")
      yield* eventually(() => reminders.length === 1, "reminder sent")
      for (let i = 0; i < 50; i++) yield* ioTurn
      expect(yield* engine.signal("o1", Approval, Exit.succeed("granted"))).toEqual({ stored: true })
      for (let i = 0; i < 200; i++) yield* ioTurn
      yield* awaitStatus(engine, "o1", "Completed")
      // Actual: { _tag: "Running" } for ever (live, not even suspended), although "approval" is in the inbox.
      expect(yield* engine.status("o1")).toEqual({ _tag: "Completed", exit: Exit.succeed("granted".length) })
    }).pipe(Effect.provide(journalCase.layer)))
})
