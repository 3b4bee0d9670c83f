/**
 * Child process of Liveness.test.ts (issue 9 #4, #9), with the DEFAULT engine options (a random identity
 * per process, no orphan check configured).
 *
 * - `serve`: an engine that runs the `Task` workflow: activity `work` (reports `work <id> {attempt}`; its
 *   attempt 0 never ends, so the parent can kill the process inside it), then a wait for the durable
 *   deferred `approval`, then activity `done` (reports `done <id> {value}`). Reports `ready`, then starts
 *   the executions the parent names (`start <id>` on stdin).
 * Every process first reports `booted` (its modules are loaded), then `starting` (its journal is open).
 * - `signal`: a short-lived process (a CLI): an engine that stores `approval` = 42 for one execution,
 *   reports `signalled <id>` and exits.
 */
import { Message } from "@effect-cluster/cluster"
import { Effect, Exit, Schema } from "effect"
import * as Activity from "../../src/Activity.js"
import * as DurableDeferred from "../../src/DurableDeferred.js"
import * as Workflow from "../../src/Workflow.js"
import * as WorkflowEngine from "../../src/WorkflowEngine.js"
import { awaitCommand, type ChildConfig, emit, journalLayer, main, readConfig } from "./child.js"

interface LivenessConfig extends ChildConfig {
  readonly mode: "serve" | "signal"
  readonly executionId?: string
}

class Task extends Message.TaggedMessage<Task>()(
  "Task",
  Schema.Never,
  Schema.Number,
  { id: Schema.String },
  (_) => _.id
) {}

const Approval = DurableDeferred.make("approval", { success: Schema.Number })

const workflow = Workflow.make(Task, (task) =>
  Effect.gen(function*() {
    yield* Activity.make("work", Schema.Number, Schema.Never)(
      Effect.flatMap(Activity.currentAttempt, (attempt) => {
        emit("work", task.id, { attempt, at: Date.now() })
        return attempt === 0 ? Effect.never : Effect.succeed(attempt)
      })
    )
    const value = yield* DurableDeferred.await(Approval)
    return yield* Activity.make("done", Schema.Number, Schema.Never)(
      Effect.sync(() => {
        emit("done", task.id, { value, at: Date.now() })
        return value
      })
    )
  }))

const config = readConfig<LivenessConfig>()
// Node and the modules are loaded (the parent times the process's start-up from here and from "starting")
emit("booted", config.mode, {})

main(
  Effect.gen(function*() {
    emit("starting", config.mode, {})
    const engine = yield* WorkflowEngine.make(workflow)
    if (config.mode === "signal") {
      const id = config.executionId!
      const { stored } = yield* engine.signal(id, Approval, Exit.succeed(42))
      emit("signalled", id, { stored, at: Date.now() })
      return
    }
    emit("ready", engine.identity, {})
    while (true) {
      const command = yield* awaitCommand
      if (command.startsWith("start ")) yield* engine.sendDiscard(new Task({ id: command.slice(6) }))
    }
  }).pipe(Effect.scoped, Effect.provide(journalLayer(config)))
)
