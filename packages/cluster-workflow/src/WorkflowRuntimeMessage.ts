/**
 * The messages of the 2024 workflow coordinator's mailbox (2024 names, tags and fields).
 *
 * The engine of this package has no such mailbox (its coordinator is internal and keyed by step ids, see
 * docs/engine.md): these classes are kept so that 2024 code that builds or matches them compiles; nothing
 * in the engine produces or consumes them.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Deferred from "effect/Deferred"
import type * as Exit from "effect/Exit"
import type * as WorkflowRuntimeState from "./WorkflowRuntimeState.js"

const REQUEST_FORK = "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestFork"
const REQUEST_JOIN = "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestJoin"
const REQUEST_YIELD = "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestYield"
const REQUEST_COMPLETE = "@effect/cluster-workflow/WorkflowRuntimeMessage/RequestComplete"
const CHECK_STATUS = "@effect/cluster-workflow/WorkflowRuntimeMessage/CheckStatus"

/**
 * An activity asks to start; `signal` is completed once its start is recorded.
 *
 * @since 0.1.0
 * @category models
 */
export class RequestFork extends Data.TaggedClass(REQUEST_FORK)<{
  readonly persistenceId: string
  readonly signal: Deferred.Deferred<void>
}> {}

/**
 * An activity ended; `signal` is completed once its end is recorded.
 *
 * @since 0.1.0
 * @category models
 */
export class RequestJoin extends Data.TaggedClass(REQUEST_JOIN)<{
  readonly persistenceId: string
  readonly signal: Deferred.Deferred<void>
}> {}

/**
 * The workflow asks to suspend (`Workflow.yieldExecution`).
 *
 * @since 0.1.0
 * @category models
 */
export class RequestYield extends Data.TaggedClass(REQUEST_YIELD)<{}> {}

/**
 * The workflow ended with `exit`; `signal` is completed once it is recorded.
 *
 * @since 0.1.0
 * @category models
 */
export class RequestComplete<A, E> extends Data.TaggedClass(REQUEST_COMPLETE)<{
  readonly exit: Exit.Exit<A, E>
  readonly signal: Deferred.Deferred<void>
}> {}

/**
 * Asks the coordinator for its state.
 *
 * @since 0.1.0
 * @category models
 */
export class CheckStatus<A, E> extends Data.TaggedClass(CHECK_STATUS)<{
  readonly signal: Deferred.Deferred<WorkflowRuntimeState.WorkflowRuntimeState<A, E>>
}> {}

/**
 * A coordinator message.
 *
 * @since 0.1.0
 * @category models
 */
export type WorkflowRuntimeMessage<A, E> =
  | RequestJoin
  | RequestFork
  | RequestYield
  | RequestComplete<A, E>
  | CheckStatus<A, E>

/**
 * Handles each kind of message.
 *
 * @since 0.1.0
 * @category pattern matching
 */
export const match = <A, E, B, C = B, D = C, F = D, G = F>(
  message: WorkflowRuntimeMessage<A, E>,
  cases: {
    readonly onRequestFork: (message: RequestFork) => B
    readonly onRequestJoin: (message: RequestJoin) => C
    readonly onRequestYield: (message: RequestYield) => D
    readonly onRequestComplete: (message: RequestComplete<A, E>) => F
    readonly onCheckStatus: (message: CheckStatus<A, E>) => G
  }
): B | C | D | F | G => {
  switch (message._tag) {
    case REQUEST_FORK:
      return cases.onRequestFork(message)
    case REQUEST_JOIN:
      return cases.onRequestJoin(message)
    case REQUEST_YIELD:
      return cases.onRequestYield(message)
    case REQUEST_COMPLETE:
      return cases.onRequestComplete(message)
    case CHECK_STATUS:
      return cases.onCheckStatus(message)
  }
}
