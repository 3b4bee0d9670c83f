/**
 * What an engine fault does to an execution. No engine fault is ever recorded as a workflow's outcome:
 *
 * - a transient fault (the journal failed, the claim was lost) stops the execution in this engine; it
 *   resumes from its journal later;
 * - a code fault (non-determinism, an entry or value the code cannot decode or encode, a misused feature)
 *   makes it *stuck*: suspended, with the fault in its `suspendedOn` (`stuck:<fault as JSON>`), until an
 *   engine with other code starts or `engine.resume(id)` is called.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import { JournalError } from "../DurableExecutionJournal.js"
import {
  ClaimLostError,
  EncodeError,
  EngineClosedError,
  JournalDecodeError,
  NonDeterminismError,
  PayloadDecodeError,
  PayloadMismatchError,
  WorkflowEngineError,
  WorkflowUsageError
} from "../WorkflowError.js"

/** A fault of the code running an execution. @internal */
export type CodeFault =
  | NonDeterminismError
  | JournalDecodeError
  | EncodeError
  | PayloadDecodeError
  | PayloadMismatchError
  | WorkflowUsageError

/** @internal */
export const isCodeFault = (u: unknown): u is CodeFault =>
  u instanceof NonDeterminismError || u instanceof JournalDecodeError || u instanceof EncodeError ||
  u instanceof PayloadDecodeError || u instanceof PayloadMismatchError || u instanceof WorkflowUsageError

/** A fault that stops an execution in this engine only (it resumes from its journal later). @internal */
export type TransientFault = JournalError | ClaimLostError | EngineClosedError

/** @internal */
export const isTransientFault = (u: unknown): u is TransientFault =>
  u instanceof JournalError || u instanceof ClaimLostError || u instanceof EngineClosedError

/** Any engine fault raised inside a workflow body. @internal */
export const isEngineFault = (u: unknown): u is CodeFault | TransientFault =>
  isCodeFault(u) || isTransientFault(u)

/** Executions that became stuck, tagged by workflow. @internal */
export const stuckExecutions = Metric.counter("effect_cluster_workflow_stuck_executions_total", {
  description: "Executions suspended as stuck: their code cannot carry them on (non-determinism, undecodable entries)"
})

const stuckPrefix = "stuck:"
const encodeFault = Schema.encodeEither(Schema.parseJson(WorkflowEngineError))
const decodeFault = Schema.decodeUnknownEither(Schema.parseJson(WorkflowEngineError))

/** The `suspendedOn` of an execution stuck on `fault`. @internal */
export const stuckOn = (fault: CodeFault): string =>
  stuckPrefix + Either.getOrElse(encodeFault(fault), () => JSON.stringify({ _tag: fault._tag }))

/** The fault an execution is stuck on, from its `suspendedOn`. @internal */
export const stuckFault = (suspendedOn: string | null): CodeFault | undefined => {
  if (suspendedOn === null || !suspendedOn.startsWith(stuckPrefix)) return undefined
  const decoded = decodeFault(suspendedOn.slice(stuckPrefix.length))
  if (Either.isRight(decoded) && isCodeFault(decoded.right)) return decoded.right
  return new WorkflowUsageError({ message: `stuck on an engine fault that no longer decodes: ${suspendedOn}` })
}
