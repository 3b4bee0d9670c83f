/**
 * The states of the 2024 workflow coordinator (2024 names, tags and fields).
 *
 * The engine of this package reports an execution's state with `WorkflowEngine.status` (Running,
 * Suspended, Completed, Failed, Cancelled); these classes are kept so that 2024 code that builds or
 * matches them compiles, and `fromExecutionState` maps a status onto them where one corresponds.
 *
 * @since 0.1.0
 */
import type * as Message from "@effect-cluster/cluster/Message"
import * as Data from "effect/Data"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type { ExecutionState } from "./WorkflowEngine.js"
import type * as WorkflowRuntimeMessage from "./WorkflowRuntimeMessage.js"

const NOT_STARTED = "@effect/cluster-workflow/WorkflowRuntimeState/NotStarted"
const REPLAY = "@effect/cluster-workflow/WorkflowRuntimeState/Replay"
const RUNNING = "@effect/cluster-workflow/WorkflowRuntimeState/Running"
const YIELDING = "@effect/cluster-workflow/WorkflowRuntimeState/Yielding"
const COMPLETED = "@effect/cluster-workflow/WorkflowRuntimeState/Completed"

/**
 * Nothing recorded yet.
 *
 * @since 0.1.0
 * @category models
 */
export class NotStarted extends Data.TaggedClass(NOT_STARTED)<{}> {}

/**
 * Replaying the journal of a started execution.
 *
 * @since 0.1.0
 * @category models
 */
export class Replay<A, E> extends Data.TaggedClass(REPLAY)<{
  readonly version: string
  readonly fiber: Fiber.Fiber<A, E>
  readonly expectedSequence: number
  readonly attempt: number
  readonly delayedMessages: ReadonlyArray<WorkflowRuntimeMessage.WorkflowRuntimeMessage<A, E>>
}> {}

/**
 * Running past the end of the journal.
 *
 * @since 0.1.0
 * @category models
 */
export class Running<A, E> extends Data.TaggedClass(RUNNING)<{
  readonly fiber: Fiber.Fiber<A, E>
  readonly attempt: number
  readonly nextSequence: number
}> {}

/**
 * Suspending: nothing more is recorded in this attempt.
 *
 * @since 0.1.0
 * @category models
 */
export class Yielding<A, E> extends Data.TaggedClass(YIELDING)<{
  readonly fiber: Fiber.Fiber<A, E>
}> {}

/**
 * Finished with `exit`.
 *
 * @since 0.1.0
 * @category models
 */
export class Completed<A, E> extends Data.TaggedClass(COMPLETED)<{
  readonly exit: Exit.Exit<A, E>
}> {}

/**
 * A coordinator state.
 *
 * @since 0.1.0
 * @category models
 */
export type WorkflowRuntimeState<A, E> = NotStarted | Replay<A, E> | Running<A, E> | Yielding<A, E> | Completed<A, E>

/**
 * Handles each state.
 *
 * @since 0.1.0
 * @category pattern matching
 */
export const match = <A, E, B, C = B, D = C, F = D, G = F>(
  state: WorkflowRuntimeState<A, E>,
  cases: {
    readonly onReplay: (state: Replay<A, E>) => B
    readonly onRunning: (state: Running<A, E>) => C
    readonly onYielding: (state: Yielding<A, E>) => D
    readonly onCompleted: (state: Completed<A, E>) => F
    readonly onNotStarted: (state: NotStarted) => G
  }
): B | C | D | F | G => {
  switch (state._tag) {
    case NOT_STARTED:
      return cases.onNotStarted(state)
    case REPLAY:
      return cases.onReplay(state)
    case RUNNING:
      return cases.onRunning(state)
    case YIELDING:
      return cases.onYielding(state)
    case COMPLETED:
      return cases.onCompleted(state)
  }
}

/**
 * The state before anything is recorded, typed for a message.
 *
 * @since 0.1.0
 * @category constructors
 */
export const initialState = <A extends Message.Message.Any>(): WorkflowRuntimeState<
  Message.Message.Success<A>,
  Message.Message.Error<A>
> => new NotStarted()

/**
 * The 2024 state that corresponds to an engine status (`WorkflowEngine.status`), where one does:
 * `Unknown` is `NotStarted`; `Completed`, `Failed` are `Completed` with the exit. `Running`, `Suspended`
 * and `Cancelled` have none (the 2024 states of a live attempt carry its fiber, which the engine does not
 * expose; cancellation did not exist), so they give `None`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromExecutionState = <A, E>(
  state: ExecutionState<A, E>
): Option.Option<WorkflowRuntimeState<A, E>> => {
  switch (state._tag) {
    case "Unknown":
      return Option.some(new NotStarted())
    case "Completed":
    case "Failed":
      return Option.some(new Completed({ exit: state.exit }))
    default:
      return Option.none()
  }
}
