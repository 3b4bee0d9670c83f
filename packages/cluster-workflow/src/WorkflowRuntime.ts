/**
 * One execution or resumption of a workflow (2024 name). In 2024 this module held the coordinator that
 * replayed a workflow's journal and ran it; in this package the engine (`WorkflowEngine`) does that, and
 * `attempt` runs one request on an engine made for the occasion. docs/workflows.md ("The 2024 runtime
 * modules") lists what differs.
 *
 * @since 0.1.0
 */
import type * as Message from "@effect-cluster/cluster/Message"
import * as Effect from "effect/Effect"
import type { DurableExecutionJournal } from "./internal/journal.js"
import type { Workflow } from "./Workflow.js"
import * as WorkflowEngine from "./WorkflowEngine.js"

/**
 * Runs `request` through `workflow` on the journal in context and returns its result, typed as in 2024:
 * starts the execution, resumes it from the journal if it was started before (completed activities are
 * not run again), or returns the recorded result if it has finished.
 *
 * Runs on its own engine for the duration of the call (it resumes no other execution). Interrupting the
 * caller stops the execution without recording a result, as 2024's graceful suspension did; sending the
 * request again resumes it. Engine faults (non-determinism, a journal that stays down, ...) are defects
 * carrying the classes of `WorkflowError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const attempt = <T extends Message.Message.Any, R>(workflow: Workflow<T, R>) =>
<A extends T>(
  request: A
): Effect.Effect<Message.Message.Success<A>, Message.Message.Error<A>, R | DurableExecutionJournal> =>
  Effect.scoped(
    Effect.flatMap(
      Effect.orDie(WorkflowEngine.make(workflow, { resumeOnStart: false })),
      (engine) => engine.send(request)
    )
  )
