/**
 * Errors of the workflow engine.
 *
 * On the 2024 signatures (`engine.send`, `Activity.make`) these surface as defects carrying these
 * classes (recognise them with the `is...` guards); the newer APIs (`result`, `status`, `cancel`,
 * `signal`...) return them as typed errors.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { JournalError } from "./DurableExecutionJournal.js"

/**
 * On replay the workflow asked for a different step than the journal recorded: the code changed in a
 * way that breaks determinism, or it depends on something outside the journal. The execution stops.
 *
 * @since 0.1.0
 * @category errors
 */
export class NonDeterminismError extends Schema.TaggedError<NonDeterminismError>(
  "@effect-cluster/cluster-workflow/NonDeterminismError"
)("NonDeterminismError", {
  workflow: Schema.String,
  executionId: Schema.String,
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message() {
    return `Execution ${this.workflow}/${this.executionId} is not deterministic: the journal expects ${this.expected}, the workflow asked for ${this.actual}`
  }
}

/**
 * A journal entry of this execution no longer decodes with the workflow's schemas (the code changed).
 * The execution stops; other executions carry on; nothing in the journal is overwritten.
 *
 * @since 0.1.0
 * @category errors
 */
export class JournalDecodeError extends Schema.TaggedError<JournalDecodeError>(
  "@effect-cluster/cluster-workflow/JournalDecodeError"
)("JournalDecodeError", {
  workflow: Schema.String,
  executionId: Schema.String,
  step: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `Execution ${this.workflow}/${this.executionId}: the journal entry of ${this.step} does not decode: ${this.reason}`
  }
}

/**
 * The execution was cancelled (`engine.cancel`); its compensations have run.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkflowCancelledError extends Schema.TaggedError<WorkflowCancelledError>(
  "@effect-cluster/cluster-workflow/WorkflowCancelledError"
)("WorkflowCancelledError", {
  workflow: Schema.String,
  executionId: Schema.String
}) {
  override get message() {
    return `Execution ${this.workflow}/${this.executionId} was cancelled`
  }
}

/**
 * An execution id was sent again with a different payload. Nothing was started or merged.
 *
 * @since 0.1.0
 * @category errors
 */
export class PayloadMismatchError extends Schema.TaggedError<PayloadMismatchError>(
  "@effect-cluster/cluster-workflow/PayloadMismatchError"
)("PayloadMismatchError", {
  workflow: Schema.String,
  executionId: Schema.String
}) {
  override get message() {
    return `Execution ${this.workflow}/${this.executionId} already exists with a different payload`
  }
}

/**
 * No execution with this id is known to the journal (for the engine's workflows).
 *
 * @since 0.1.0
 * @category errors
 */
export class ExecutionNotFoundError extends Schema.TaggedError<ExecutionNotFoundError>(
  "@effect-cluster/cluster-workflow/ExecutionNotFoundError"
)("ExecutionNotFoundError", {
  executionId: Schema.String
}) {
  override get message() {
    return `No execution ${this.executionId}`
  }
}

/**
 * The start message of an execution no longer decodes with the workflow's schema.
 *
 * @since 0.1.0
 * @category errors
 */
export class PayloadDecodeError extends Schema.TaggedError<PayloadDecodeError>(
  "@effect-cluster/cluster-workflow/PayloadDecodeError"
)("PayloadDecodeError", {
  workflow: Schema.String,
  executionId: Schema.String,
  reason: Schema.String
}) {}

/**
 * A value could not be encoded with its schema before it was written to the journal.
 *
 * @since 0.1.0
 * @category errors
 */
export class EncodeError extends Schema.TaggedError<EncodeError>(
  "@effect-cluster/cluster-workflow/EncodeError"
)("EncodeError", {
  workflow: Schema.String,
  executionId: Schema.String,
  step: Schema.String,
  reason: Schema.String
}) {}

/**
 * The engine lost its claim on the execution (another engine took it over after the lease expired).
 * This engine stopped running it; the new owner carries on.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClaimLostError extends Schema.TaggedError<ClaimLostError>(
  "@effect-cluster/cluster-workflow/ClaimLostError"
)("ClaimLostError", {
  workflow: Schema.String,
  executionId: Schema.String
}) {}

/**
 * The caller's wait for a result ended (timeout) before the execution finished. The execution goes on.
 *
 * @since 0.1.0
 * @category errors
 */
export class ResultTimeoutError extends Schema.TaggedError<ResultTimeoutError>(
  "@effect-cluster/cluster-workflow/ResultTimeoutError"
)("ResultTimeoutError", {
  executionId: Schema.String
}) {}

/**
 * A workflow feature was used in a way the engine does not support (e.g. a transactional activity on
 * a journal that is not SQL, or on another SqlClient).
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkflowUsageError extends Schema.TaggedError<WorkflowUsageError>(
  "@effect-cluster/cluster-workflow/WorkflowUsageError"
)("WorkflowUsageError", {
  message: Schema.String
}) {}

/**
 * The engine's scope closed while this caller was waiting on it (or the caller used it afterwards). The
 * execution is not affected: it resumes from the journal in the next engine; await it there.
 *
 * @since 0.1.0
 * @category errors
 */
export class EngineClosedError extends Schema.TaggedError<EngineClosedError>(
  "@effect-cluster/cluster-workflow/EngineClosedError"
)("EngineClosedError", {
  identity: Schema.String
}) {
  override get message() {
    return `The workflow engine ${this.identity} is closed`
  }
}

/**
 * Every engine fault.
 *
 * @since 0.1.0
 * @category errors
 */
export type WorkflowEngineError =
  | NonDeterminismError
  | JournalDecodeError
  | WorkflowCancelledError
  | PayloadMismatchError
  | ExecutionNotFoundError
  | PayloadDecodeError
  | EncodeError
  | ClaimLostError
  | WorkflowUsageError
  | EngineClosedError
  | JournalError

const engineErrorTags = new Set([
  "NonDeterminismError",
  "JournalDecodeError",
  "WorkflowCancelledError",
  "PayloadMismatchError",
  "ExecutionNotFoundError",
  "PayloadDecodeError",
  "EncodeError",
  "ClaimLostError",
  "WorkflowUsageError",
  "EngineClosedError",
  "JournalError"
])

/**
 * Whether a value (e.g. a defect from `send`) is an engine fault.
 *
 * @since 0.1.0
 * @category guards
 */
export const isWorkflowEngineError = (u: unknown): u is WorkflowEngineError =>
  Predicate.hasProperty(u, "_tag") && typeof u._tag === "string" && engineErrorTags.has(u._tag) && u instanceof Error

/**
 * @since 0.1.0
 * @category guards
 */
export const isNonDeterminismError = (u: unknown): u is NonDeterminismError => u instanceof NonDeterminismError

/**
 * @since 0.1.0
 * @category guards
 */
export const isWorkflowCancelledError = (u: unknown): u is WorkflowCancelledError =>
  u instanceof WorkflowCancelledError

/**
 * @since 0.1.0
 * @category guards
 */
export const isPayloadMismatchError = (u: unknown): u is PayloadMismatchError => u instanceof PayloadMismatchError

/**
 * @since 0.1.0
 * @category guards
 */
export const isJournalDecodeError = (u: unknown): u is JournalDecodeError => u instanceof JournalDecodeError

/**
 * @since 0.1.0
 * @category guards
 */
export const isEngineClosedError = (u: unknown): u is EngineClosedError => u instanceof EngineClosedError

/**
 * The schema of every engine fault, used to record and replay them.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WorkflowEngineError: Schema.Schema<WorkflowEngineError, any> = Schema.Union(
  NonDeterminismError,
  JournalDecodeError,
  WorkflowCancelledError,
  PayloadMismatchError,
  ExecutionNotFoundError,
  PayloadDecodeError,
  EncodeError,
  ClaimLostError,
  WorkflowUsageError,
  EngineClosedError,
  JournalError
)
