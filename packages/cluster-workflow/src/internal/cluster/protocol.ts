/**
 * What callers send to an execution's owner pod: its start, and a wake-up after a change to its inbox
 * (signal, cancellation, resume) that the caller has already stored in the journal.
 *
 * @internal
 */
import { Message, RecipientType } from "@effect-cluster/cluster"
import * as Schema from "effect/Schema"
import { WorkflowEngineError } from "../../WorkflowError.js"

/** The owner's answer to a start: the execution runs (or was joined), or had finished with `result`. */
const StartReply = Schema.Union(
  Schema.TaggedStruct("Running", {}),
  Schema.TaggedStruct("Finished", { result: Schema.String })
)

/**
 * Starts (or joins) an execution on its owner; answered once the start is committed. The payload is the
 * start message encoded with the workflow's schema (JSON text). `requestId` is one per start call (kept by
 * its retries): the cluster dedupes a retried request, and the journal decides whether the start joins an
 * execution (same id, same payload) or is refused (another payload).
 *
 * @internal
 */
export class StartExecution extends Message.TaggedMessage<StartExecution>()(
  "StartExecution",
  WorkflowEngineError,
  StartReply,
  { workflow: Schema.String, executionId: Schema.String, payload: Schema.String, requestId: Schema.String },
  (message) => `start/${message.workflow}/${message.executionId}/${message.requestId}`
) {}

/**
 * Tells the owner that an execution's inbox changed (the change is stored already): it resumes a
 * suspended execution or notifies the running one. One wake per stored change (`version`), so a retried
 * wake is dropped by its primary key.
 *
 * @internal
 */
export class WakeExecution extends Message.TaggedMessage<WakeExecution>()(
  "WakeExecution",
  Schema.Never,
  Schema.Void,
  {
    workflow: Schema.String,
    executionId: Schema.String,
    reason: Schema.Literal("inbox", "cancel", "resume"),
    version: Schema.Number
  },
  (message) => `wake/${message.workflow}/${message.executionId}/${message.reason}/${message.version}`
) {}

/** @internal */
export type ExecutionMessage = StartExecution | WakeExecution

/**
 * The entity type of the executions of a set of workflows. Every engine built from the same workflows
 * (pods and clients) names the same type.
 *
 * @internal
 */
export const entityTypeOf = (workflows: ReadonlyArray<string>) =>
  RecipientType.makeEntityType(
    `effect-cluster-workflow/${[...workflows].sort().join(",")}`,
    Schema.Union(StartExecution, WakeExecution)
  )

/**
 * The entity of a root execution. A child execution lives in its root's entity (same shard, same owner),
 * recorded in the shard index when it starts.
 *
 * @internal
 */
export const rootEntityId = (workflow: string, executionId: string): string => `${workflow}/${executionId}`
