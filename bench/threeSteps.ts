/**
 * The workflow bench/workflow.ts and bench/memory.ts measure: three activities (each `Effect.succeed`,
 * built once, results journaled); a message `n` answers `n + 6`.
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, Workflow } from "@effect-cluster/cluster-workflow"
import { Effect, Schema } from "effect"

/** The benchmark's message. */
export class Bench extends Message.TaggedMessage<Bench>()(
  "Bench",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, n: Schema.Number },
  (_) => _.id
) {}

/** The first activity: 1. */
export const step1 = Activity.make("step-1", Schema.Number, Schema.Never)(Effect.succeed(1))
/** The second activity: 2. */
export const step2 = Activity.make("step-2", Schema.Number, Schema.Never)(Effect.succeed(2))
/** The third activity: 3. */
export const step3 = Activity.make("step-3", Schema.Number, Schema.Never)(Effect.succeed(3))

/** The three activities in a row: `n + 1 + 2 + 3`. */
export const benchWorkflow = Workflow.make(Bench, (message) =>
  Effect.gen(function*() {
    const a = yield* step1
    const b = yield* step2
    const c = yield* step3
    return message.n + a + b + c
  }))
