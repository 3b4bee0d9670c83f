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
 * `requestId` is optional on the wire: callers of the release before it (a rolling upgrade) send none, and
 * their start is accepted. Such a start is deduplicated by execution, as that release did (its sender
 * puts `start/<workflow>/<executionId>` in the envelope, which is what the receiving pod uses).
 *
 * @internal
 */
export class StartExecution extends Message.TaggedMessage<StartExecution>()(
  "StartExecution",
  WorkflowEngineError,
  StartReply,
  {
    workflow: Schema.String,
    executionId: Schema.String,
    payload: Schema.String,
    requestId: Schema.optional(Schema.String)
  },
  (message) =>
    message.requestId === undefined
      ? `start/${message.workflow}/${message.executionId}`
      : `start/${message.workflow}/${message.executionId}/${message.requestId}`
) {}

/** The owner's answer to an `AwaitExecution`: the result, "ask again", or "look in the journal". */
const AwaitReply = Schema.Union(
  Schema.TaggedStruct("Finished", { result: Schema.String }),
  Schema.TaggedStruct("Pending", {}),
  Schema.TaggedStruct("NotHere", {})
)

/**
 * Asks the owner of an execution for its result, pushed when the execution completes there: answered
 * with `Finished` then, with `NotHere` at once when it is not running on that pod (finished before,
 * suspended, elsewhere) or when it leaves the pod, and with `Pending` after `waitMillis` (bounded by the
 * owner). On any answer but `Finished` the caller reads the journal (its fallback), then may ask again. It is sent to a waiter entity in the execution's shard (`waiterEntityId`),
 * never to the execution's own entity, whose mailbox must stay free for starts and wake-ups while a caller
 * waits. `requestId` is one per wait (no stored reply answers another).
 *
 * @internal
 */
export class AwaitExecution extends Message.TaggedMessage<AwaitExecution>()(
  "AwaitExecution",
  Schema.Never,
  AwaitReply,
  { workflow: Schema.String, executionId: Schema.String, waitMillis: Schema.Number, requestId: Schema.String },
  (message) => `await/${message.workflow}/${message.executionId}/${message.requestId}`
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
export type ExecutionMessage = StartExecution | WakeExecution | AwaitExecution

/**
 * The entity type of the executions of a set of workflows. Every engine built from the same workflows
 * (pods and clients) names the same type.
 *
 * @internal
 */
export const entityTypeOf = (workflows: ReadonlyArray<string>) =>
  RecipientType.makeEntityType(
    `effect-cluster-workflow/${[...workflows].sort().join(",")}`,
    Schema.Union(StartExecution, WakeExecution, AwaitExecution)
  )

/**
 * The entity of a root execution. A child execution lives in its root's entity (same shard, same owner),
 * recorded in the shard index when it starts.
 *
 * @internal
 */
export const rootEntityId = (workflow: string, executionId: string): string => `${workflow}/${executionId}`

/**
 * An entity id in `shard` for the caller `caller`'s waiter `slot`: `shardOf` (the cluster's hash) decides
 * the shard of an id, so a counter is appended until it lands there (about `numberOfShards` tries,
 * computed once per slot by the caller; undefined if none did in 100,000). Each waiter is its own entity,
 * so waits never queue behind one another nor behind the execution's messages. (The entity receiving a
 * message does not matter to its handling: an execution's entity that happened to have such an id would
 * only make waits queue behind its messages.)
 *
 * @internal
 */
export const waiterEntityId = (
  caller: string,
  slot: number,
  shard: number,
  shardOf: (entityId: string) => number
): string | undefined => {
  for (let salt = 0; salt < 100_000; salt++) {
    const id = `@await/${caller}/${shard}/${slot}/${salt}`
    if (shardOf(id) === shard) return id
  }
  return undefined
}
