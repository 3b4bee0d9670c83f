/**
 * The 2024 journal events (2024 name, tags and encoding): what the 2024 engine wrote, per persistence id,
 * into `DurableExecutionJournal.append` and read back with `read`. `schema(success, failure)` encodes them
 * exactly as 2024 did, so rows of an existing 2024 journal table decode.
 *
 * The engine of this package records executions in its own tables (docs/journal.md) and does not write
 * these events; they remain for programs that use `append`/`read` directly (see docs/workflows.md, "The
 * 2024 runtime modules").
 *
 * @since 0.1.0
 */
import type * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"

const ATTEMPTED = "@effect/cluster-workflow/DurableExecutionEvent/Attempted" as const
const INTERRUPTION_REQUESTED = "@effect/cluster-workflow/DurableExecutionEvent/InterruptionRequested" as const
const COMPLETED = "@effect/cluster-workflow/DurableExecutionEvent/Completed" as const
const FORKED = "@effect/cluster-workflow/DurableExecutionEvent/Forked" as const
const JOINED = "@effect/cluster-workflow/DurableExecutionEvent/Joined" as const

/**
 * An execution attempt started, with the workflow version recorded at its first start.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempted {
  readonly _tag: typeof ATTEMPTED
  readonly sequence: number
  readonly version: string
}

/**
 * A request to interrupt the execution (built by `KillRequested`).
 *
 * @since 0.1.0
 * @category models
 */
export interface InterruptionRequested {
  readonly _tag: typeof INTERRUPTION_REQUESTED
  readonly sequence: number
}

/**
 * The execution (or activity) ended with `exit`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Completed<A, E> {
  readonly _tag: typeof COMPLETED
  readonly sequence: number
  readonly exit: Exit.Exit<A, E>
}

/**
 * The workflow started the activity `persistenceId`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Forked {
  readonly _tag: typeof FORKED
  readonly sequence: number
  readonly persistenceId: string
}

/**
 * The activity `persistenceId` ended, as seen by its workflow.
 *
 * @since 0.1.0
 * @category models
 */
export interface Joined {
  readonly _tag: typeof JOINED
  readonly sequence: number
  readonly persistenceId: string
}

/**
 * A 2024 journal event.
 *
 * @since 0.1.0
 * @category models
 */
export type DurableExecutionEvent<A, E> = Attempted | InterruptionRequested | Completed<A, E> | Forked | Joined

/**
 * The encoded form of an event: `IA` is the encoded success, `IE` the encoded failure (positionally as
 * 2024's `schema` returned it).
 *
 * @since 0.1.0
 * @category models
 */
export type DurableExecutionEventFrom<IA, IE> =
  | { readonly _tag: typeof ATTEMPTED; readonly sequence: number; readonly version: string }
  | { readonly _tag: typeof INTERRUPTION_REQUESTED; readonly sequence: number }
  | { readonly _tag: typeof COMPLETED; readonly sequence: number; readonly exit: Schema.ExitEncoded<IA, IE, unknown> }
  | { readonly _tag: typeof FORKED; readonly sequence: number; readonly persistenceId: string }
  | { readonly _tag: typeof JOINED; readonly sequence: number; readonly persistenceId: string }

/**
 * `Attempted(version)(sequence)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Attempted = (version: string) => (sequence: number): DurableExecutionEvent<never, never> => ({
  _tag: ATTEMPTED,
  sequence,
  version
})

/**
 * `Completed(exit)(sequence)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Completed = <A, E>(exit: Exit.Exit<A, E>) => (sequence: number): DurableExecutionEvent<A, E> => ({
  _tag: COMPLETED,
  sequence,
  exit
})

/**
 * `KillRequested(sequence)`: builds an `InterruptionRequested` event (the 2024 name).
 *
 * @since 0.1.0
 * @category constructors
 */
export const KillRequested = (sequence: number): DurableExecutionEvent<never, never> => ({
  _tag: INTERRUPTION_REQUESTED,
  sequence
})

/**
 * `Forked(persistenceId)(sequence)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Forked = (persistenceId: string) => (sequence: number): DurableExecutionEvent<never, never> => ({
  _tag: FORKED,
  sequence,
  persistenceId
})

/**
 * `Joined(persistenceId)(sequence)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Joined = (persistenceId: string) => (sequence: number): DurableExecutionEvent<never, never> => ({
  _tag: JOINED,
  sequence,
  persistenceId
})

/**
 * The schema of the events of an execution whose result has these success and failure schemas (defects
 * encoded with `Schema.Defect`), as in 2024.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema = <A, IA, E, IE>(
  success: Schema.Schema<A, IA>,
  failure: Schema.Schema<E, IE>
): Schema.Schema<DurableExecutionEvent<A, E>, DurableExecutionEventFrom<IA, IE>> =>
  Schema.Union(
    Schema.Struct({ _tag: Schema.Literal(ATTEMPTED), sequence: Schema.Number, version: Schema.String }),
    Schema.Struct({ _tag: Schema.Literal(INTERRUPTION_REQUESTED), sequence: Schema.Number }),
    Schema.Struct({
      _tag: Schema.Literal(COMPLETED),
      sequence: Schema.Number,
      exit: Schema.Exit({ success, failure, defect: Schema.Defect })
    }),
    Schema.Struct({ _tag: Schema.Literal(FORKED), sequence: Schema.Number, persistenceId: Schema.String }),
    Schema.Struct({ _tag: Schema.Literal(JOINED), sequence: Schema.Number, persistenceId: Schema.String })
  )

/**
 * Handles each kind of event.
 *
 * @since 0.1.0
 * @category pattern matching
 */
export const match = <A, E, B, C = B, D = C, F = D, G = F>(
  event: DurableExecutionEvent<A, E>,
  cases: {
    readonly onAttempted: (event: Attempted) => B
    readonly onInterruptionRequested: (event: InterruptionRequested) => C
    readonly onCompleted: (event: Completed<A, E>) => D
    readonly onForked: (event: Forked) => F
    readonly onJoined: (event: Joined) => G
  }
): B | C | D | F | G => {
  switch (event._tag) {
    case ATTEMPTED:
      return cases.onAttempted(event)
    case INTERRUPTION_REQUESTED:
      return cases.onInterruptionRequested(event)
    case COMPLETED:
      return cases.onCompleted(event)
    case FORKED:
      return cases.onForked(event)
    case JOINED:
      return cases.onJoined(event)
  }
}
