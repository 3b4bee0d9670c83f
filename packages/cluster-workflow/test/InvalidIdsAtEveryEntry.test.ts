/**
 * An id no journal can hold (U+0000, an unpaired surrogate, over the id limit) names no execution: every
 * entry point that takes an execution id (result, poll, status, cancel, resume) answers it at once with
 * `ExecutionNotFoundError` (`status`: the state `Unknown`, as for any id with no execution) on every journal, never with a database error (PostgreSQL text cannot hold
 * U+0000), a defect or a wait.
 */
import { Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Option, Schema } from "effect"
import { describeJournals } from "./utils/journals.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

const outcome = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(Effect.timeout(effect, "10 seconds")), (exit) => {
    if (Exit.isSuccess(exit)) return (exit.value as { _tag?: string } | undefined)?._tag ?? "ok"
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) return (failure.value as { _tag?: string })._tag ?? "untagged failure"
    return Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "defect"
  })

const ids = [["U+0000", "o\u0000x"], ["an unpaired surrogate", "o\ud800x"], ["200,000 bytes", "o".repeat(200_000)]] as const

describeJournals("ids no journal can hold, at every entry point", (journalCase) => {
  for (const [name, id] of ids) {
    it.live(`${name}: result, poll, status, cancel and resume answer not found`, () =>
      Effect.gen(function*() {
        const log = new RunLog()
        const workflow = Workflow.make(Order, (order) => recorded(log, "charge", order.amount, Schema.Number))
        const engine = yield* WorkflowEngine.make(workflow)
        const outcomes = {
          result: yield* outcome(engine.result(id, { timeout: "5 seconds" })),
          poll: yield* outcome(engine.poll(id)),
          status: yield* outcome(engine.status(id)),
          cancel: yield* outcome(engine.cancel(id)),
          resume: yield* outcome(engine.resume(id))
        }
        expect(outcomes).toEqual({
          result: "ExecutionNotFoundError",
          poll: "ExecutionNotFoundError",
          status: "Unknown",
          cancel: "ExecutionNotFoundError",
          resume: "ExecutionNotFoundError"
        })
      }).pipe(Effect.scoped, Effect.provide(Layer.fresh(journalCase.layer))), 60_000)
  }
})
