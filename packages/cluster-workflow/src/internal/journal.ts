/**
 * The journal's model: keys, rows, writes and their results, the `Journal` driver interface, its service
 * tag and its error. Public through `DurableExecutionJournal` (which re-exports all of it); it lives here
 * so that the SQL journal's implementation (internal/sql) and the public modules do not import each other.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { DurableExecutionEvent } from "../DurableExecutionEvent.js"

/**
 * The version of the journal's encoded format, stored with every execution and event.
 *
 * @since 0.1.0
 * @category constants
 */
export const formatVersion = 1

/**
 * Identifies one execution: the workflow name (the message's `_tag`) and the execution id (the
 * message's primary key).
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecutionKey {
  readonly workflow: string
  readonly executionId: string
}

/**
 * The status of an execution as stored in the journal.
 *
 * - `running`: started and not finished; claimed by an engine, or orphaned when the claim has expired.
 * - `suspended`: waiting for a timer, a signal, a child or a resume; no engine holds it.
 * - `completed`, `failed`, `cancelled`: terminal, with a stored result.
 *
 * @since 0.1.0
 * @category models
 */
export type ExecutionStatus = "running" | "suspended" | "completed" | "failed" | "cancelled"

/**
 * Whether a status is terminal.
 *
 * @since 0.1.0
 * @category models
 */
export const isTerminal = (status: ExecutionStatus): boolean =>
  status === "completed" || status === "failed" || status === "cancelled"

/**
 * An execution as stored in the journal (encoded).
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecutionRow extends ExecutionKey {
  /** JSON text of the schema-encoded start message. */
  readonly payload: string
  /** Hash of `payload`; the same id sent with another payload is refused. */
  readonly payloadHash: string
  /** The 2024 `Workflow.make(..., version)` value recorded at start. */
  readonly version: string
  /** JSON text of the parent link (`{ workflow, executionId, step }`) of a child workflow, or null. */
  readonly parent: string | null
  readonly status: ExecutionStatus
  /** For `suspended`: what it waits for (e.g. `timer`, `signal`, `child`, `yield`). */
  readonly suspendedOn: string | null
  /** For `suspended`: the earliest timer deadline (epoch milliseconds), if any. */
  readonly wakeAt: number | null
  /** For terminal statuses: JSON text of the encoded exit. */
  readonly result: string | null
  /** The engine holding the execution, or null. */
  readonly claimOwner: string | null
  /** Grows on every claim; every write is fenced by it. */
  readonly claimEpoch: number
  /**
   * End of the claim's lease (epoch milliseconds), or null. In the clock of the caller that read the row:
   * SQL journals keep it in the database's time and convert it (see `Journal.claim`).
   */
  readonly claimUntil: number | null
  /** A cancellation was requested and not yet acted on. */
  readonly cancelRequested: boolean
  /** Grows whenever a signal or a cancellation arrives; a suspension is refused if it changed. */
  readonly inboxVersion: number
  readonly createdAt: number
  readonly updatedAt: number
  readonly completedAt: number | null
  readonly formatVersion: number
}

/**
 * One journal event, in structured columns. `kind` is the event tag; `step` the step's structured id
 * (kind, scope and local id, see docs/journal.md); `body` the JSON text of the event's encoded data.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventRow {
  readonly sequence: number
  readonly kind: string
  readonly stepKind: string
  readonly stepScope: string
  readonly stepId: string
  readonly attempt: number
  readonly body: string
}

/**
 * A signal (durable deferred completion) in an execution's inbox. The first value for a name wins.
 *
 * @since 0.1.0
 * @category models
 */
export interface SignalRow {
  readonly name: string
  /** JSON text of the encoded exit. */
  readonly value: string
  readonly createdAt: number
}

/**
 * The fencing token of a write: the engine that holds the claim and the claim's epoch.
 *
 * @since 0.1.0
 * @category models
 */
export interface Fence {
  readonly owner: string
  readonly epoch: number
}

/**
 * Changes to the execution row that travel with a write.
 *
 * @since 0.1.0
 * @category models
 */
export interface RowUpdate {
  readonly status?: ExecutionStatus
  readonly result?: string
  readonly completedAt?: number
  /** Clears `cancelRequested` (the cancellation was recorded as an event). */
  readonly cancelHandled?: boolean
}

/**
 * A signal an `Append` puts in another execution's inbox in the same transaction (a child's result for
 * its parent): the first value for the name wins, and the inbox version grows by one when it is stored.
 *
 * @since 0.1.0
 * @category models
 */
export interface Delivery {
  readonly key: ExecutionKey
  readonly name: string
  /** JSON text of the encoded exit. */
  readonly value: string
}

/**
 * A write of the group committer. Each one succeeds or fails on its own.
 *
 * - `Start`: inserts the execution if absent, claimed by `owner` with epoch 1. The writes of that
 *   execution that follow it in the same commit take effect only if it inserted the execution (`Fenced`
 *   otherwise): an engine runs a new execution's first step before its Start is committed, so that both
 *   share one commit.
 * - `Append`: appends events (and updates the row) if `fence` still holds the claim; with `deliver`, it
 *   also stores that signal in the other execution's inbox, atomically with the append (a child's
 *   completion and its result in the parent's inbox commit together or not at all).
 * - `Suspend`: marks the execution suspended and releases the claim, if `fence` holds and no signal or
 *   cancellation arrived since `inboxVersion`.
 *
 * @since 0.1.0
 * @category models
 */
export type JournalWrite =
  | {
    readonly _tag: "Start"
    readonly key: ExecutionKey
    readonly payload: string
    readonly payloadHash: string
    readonly version: string
    readonly parent: string | null
    readonly owner: string
    readonly claimUntil: number
    readonly now: number
  }
  | {
    readonly _tag: "Append"
    readonly key: ExecutionKey
    readonly fence: Fence
    readonly events: ReadonlyArray<EventRow>
    readonly update: RowUpdate | undefined
    readonly deliver?: Delivery | undefined
    readonly now: number
  }
  | {
    readonly _tag: "Suspend"
    readonly key: ExecutionKey
    readonly fence: Fence
    readonly inboxVersion: number
    readonly suspendedOn: string
    readonly wakeAt: number | null
    readonly now: number
  }

/**
 * The outcome of one write.
 *
 * - `Created`: a `Start` inserted the execution.
 * - `Exists`: a `Start` found the execution already there (with its row).
 * - `Ok`: an `Append` or `Suspend` took effect.
 * - `Fenced`: the writer no longer holds the claim; nothing was written.
 * - `InboxChanged`: a `Suspend` was refused because a signal or cancellation arrived.
 *
 * @since 0.1.0
 * @category models
 */
export type WriteResult =
  | { readonly _tag: "Created"; readonly epoch: number }
  | { readonly _tag: "Exists"; readonly row: ExecutionRow }
  | { readonly _tag: "Ok" }
  | { readonly _tag: "Fenced" }
  | { readonly _tag: "InboxChanged" }

/**
 * The outcome of claiming an execution.
 *
 * @since 0.1.0
 * @category models
 */
export type ClaimResult =
  | { readonly _tag: "Claimed"; readonly row: ExecutionRow }
  | { readonly _tag: "Unavailable"; readonly row: ExecutionRow | undefined }

/**
 * Options of `list`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListOptions {
  readonly workflows: ReadonlyArray<string>
  readonly status?: ExecutionStatus | undefined
  /** Return executions whose execution id is greater than this (keyset paging). */
  readonly after?: ExecutionKey | undefined
  readonly limit: number
}

/**
 * An engine's registration (see `Journal.registerEngine`).
 *
 * @since 0.1.0
 * @category models
 */
export interface EngineRegistration {
  /** This registration's own id (an engine process may register several engines). */
  readonly instance: string
  readonly owner: string
  /** How other engines learn of this engine's death: `session`, `process`, or `none` (claim expiry only). */
  readonly liveness: "session" | "process" | "none"
  /**
   * Watches for changes made by other processes, for as long as the scope is open: `onChange(key)` when an
   * execution's inbox changed or it became runnable (PostgreSQL: LISTEN/NOTIFY, within milliseconds),
   * `onChange(undefined)` when something may have (SQLite: `PRAGMA data_version` checked every
   * `changePollInterval`). Undefined when the journal cannot watch.
   */
  readonly watchChanges:
    | ((onChange: (key: ExecutionKey | undefined) => void) => Effect.Effect<void, never, Scope.Scope>)
    | undefined
  /** Fails (once) when the registration is lost (PostgreSQL: the session is gone); never succeeds. */
  readonly lost: Effect.Effect<never, JournalError>
}

/**
 * A failure of the journal's storage (database down, connection lost, constraint broken...).
 * `retryable` tells whether the engine may retry the operation. `reason`, when set, names a known cause:
 * `"shard-moved"`: on the cluster, a start refused by the fence of a pod its execution's shard had just
 * left (the cluster engine sends it again, to the new owner).
 *
 * @since 0.1.0
 * @category errors
 */
export class JournalError extends Schema.TaggedError<JournalError>("@effect-cluster/cluster-workflow/JournalError")(
  "JournalError",
  {
    operation: Schema.String,
    message: Schema.String,
    retryable: Schema.Boolean,
    reason: Schema.optional(Schema.Literal("shard-moved"))
  }
) {}

/**
 * The journal driver. Implementations: `DurableExecutionJournalInMemory` and the SQL journal
 * (`DurableExecutionJournal.layer` / `DurableExecutionJournalSql`).
 *
 * Every method is one atomic operation. `commit` applies a batch of writes in one transaction where the
 * backend has them, each write succeeding or failing on its own (a fenced write does not fail the
 * others); it returns one result per write, in order.
 *
 * @since 0.1.0
 * @category models
 */
export interface Journal {
  /** Applies a batch of writes atomically; one result per write. */
  readonly commit: (writes: ReadonlyArray<JournalWrite>) => Effect.Effect<ReadonlyArray<WriteResult>, JournalError>
  /** Reads an execution's row. */
  readonly get: (key: ExecutionKey) => Effect.Effect<Option.Option<ExecutionRow>, JournalError>
  /** Reads an execution's events with `sequence >= fromSequence`, in order. */
  readonly events: (key: ExecutionKey, fromSequence: number) => Effect.Effect<ReadonlyArray<EventRow>, JournalError>
  /** Reads an execution's inbox of signals. */
  readonly signals: (key: ExecutionKey) => Effect.Effect<ReadonlyArray<SignalRow>, JournalError>
  /**
   * Claims a non-terminal execution for `owner` until `claimUntil`, when it is unclaimed, its claim
   * expired (`claimUntil < now`) or `owner` already holds it. Increments the epoch.
   *
   * `now` and `claimUntil` are instants of the calling fiber's `Clock`. SQL journals decide expiry on the
   * database's clock: under a clock that runs by itself they take only the lease (`claimUntil - now`) from
   * them and store `db_now + lease`; under a `TestClock` they convert them with an offset to the database's
   * clock measured once (docs/journal.md, "Claim expiry on the database's clock").
   */
  readonly claim: (
    key: ExecutionKey,
    owner: string,
    now: number,
    claimUntil: number
  ) => Effect.Effect<ClaimResult, JournalError>
  /**
   * Extends the claims that `owner` still holds at the given epochs until `claimUntil` (an instant of the
   * calling fiber's `Clock`; SQL journals store the lease from the call, as for `claim`). Returns, per key,
   * the row when the claim still holds (to notice inbox changes), or undefined when it was lost.
   */
  readonly renew: (
    owner: string,
    claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>,
    claimUntil: number
  ) => Effect.Effect<ReadonlyArray<ExecutionRow | undefined>, JournalError>
  /**
   * Puts a signal in the inbox unless one with that name is there (first wins) and bumps the inbox
   * version. Returns the stored value and the row after the change (undefined for an unknown execution).
   */
  readonly signal: (
    key: ExecutionKey,
    name: string,
    value: string,
    now: number
  ) => Effect.Effect<{ readonly stored: string; readonly row: ExecutionRow } | undefined, JournalError>
  /** Requests cancellation of a non-terminal execution. Returns the row after the change, if any. */
  readonly requestCancel: (key: ExecutionKey, now: number) => Effect.Effect<ExecutionRow | undefined, JournalError>
  /** Marks a `yield`-suspended execution runnable (status `running`, unclaimed). */
  readonly resume: (key: ExecutionKey, now: number) => Effect.Effect<ExecutionRow | undefined, JournalError>
  /** The earliest `wakeAt` among suspended executions of these workflows. */
  readonly nextWakeAt: (workflows: ReadonlyArray<string>) => Effect.Effect<number | undefined, JournalError>
  /** Suspended executions due by `now`, in deadline order. */
  readonly dueTimers: (
    workflows: ReadonlyArray<string>,
    now: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ExecutionKey>, JournalError>
  /**
   * Executions that should run but nobody runs: `running` with no claim or an expired claim (expired at
   * `now`; SQL journals: on the database's clock, as for `claim`), or one held by `owner` (a restarted
   * engine with the same identity). Oldest first.
   */
  readonly resumable: (
    workflows: ReadonlyArray<string>,
    owner: string,
    now: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ExecutionKey>, JournalError>
  /**
   * The claim of a running execution of these workflows, held by another engine than `owner`, that
   * expires first (an engine wakes then to resume what a dead engine left), its end in the calling fiber's
   * clock. Optional for journals written before it: without it, claims held by others are only looked at
   * by periodic checks.
   */
  readonly nextClaimExpiry?: (
    workflows: ReadonlyArray<string>,
    owner: string
  ) => Effect.Effect<{ readonly owner: string; readonly claimUntil: number } | undefined, JournalError>
  /**
   * Gives up claims `owner` still holds at the given epochs (a graceful shutdown): the executions stay
   * `running`, unclaimed, so any engine resumes them at once. Returns how many were released.
   */
  readonly release?: (
    owner: string,
    claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>
  ) => Effect.Effect<number, JournalError>
  /**
   * SQL journals: binds the liveness of engine `owner` to this scope (PostgreSQL: a database session
   * held open for it; SQLite: this process's host, pid and start time), so that other engines know at
   * once when it is dead (see `releaseDeadClaims`).
   */
  readonly registerEngine?: (
    owner: string,
    workflows: ReadonlyArray<string>
  ) => Effect.Effect<EngineRegistration, JournalError, Scope.Scope>
  /**
   * SQL journals: releases the claims of engines known to be dead (PostgreSQL: their registered
   * session is gone; SQLite: their process on this host is gone) and forgets those engines. Returns the
   * number of executions released (they are `running` and unclaimed: any engine may resume them).
   */
  readonly releaseDeadClaims?: (self: EngineRegistration | undefined) => Effect.Effect<number, JournalError>
  /**
   * SQL journals: how many other engines registered on this journal that run `workflow` are known to be
   * alive (an engine only passing a signal through leaves the execution to them).
   */
  readonly otherLiveEngines?: (self: EngineRegistration, workflow: string) => Effect.Effect<number, JournalError>
  /**
   * Suspended executions whose inbox changed after they suspended (a signal or a cancellation stored by
   * a process that died before waking them), and parents suspended on a child that is terminal while its
   * result is not in their inbox (journals recorded before a child's completion delivered it in the same
   * write): they should run. Optional for journals written before it.
   */
  readonly staleSuspensions?: (
    workflows: ReadonlyArray<string>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<ExecutionKey>, JournalError>
  /** Lists executions, ordered by (workflow, executionId), paged by keyset. */
  readonly list: (options: ListOptions) => Effect.Effect<ReadonlyArray<ExecutionRow>, JournalError>
  /** Deletes terminal executions completed before `before` (retention). Returns how many were deleted. */
  readonly deleteCompleted: (before: number) => Effect.Effect<number, JournalError>
  /**
   * Cluster journals only: whether this process may still act for an execution it runs (its pod serves
   * the execution's shard, by the pod's own clock, at the epoch the execution runs under). Asked after an
   * activity's attempt is recorded and before its body runs, so a pod paused past its lease and resumed
   * does not start a body that the shard's new owner may be running already.
   */
  readonly mayAct?: (key: ExecutionKey) => Effect.Effect<boolean>
  /**
   * Cluster journals only: which writes the engine's group committer must hold back for now, asked before
   * each batch (undefined: none). A write of an execution whose shard is in a lapse (held by the pod, not
   * served by its own clock: a renewal may follow at the same epoch) would be refused, stopping its
   * execution and running again the activity body whose result it records; held back, it commits once
   * the lapse ends, while the other executions' writes go on committing. The committer holds back the
   * execution's later writes with it (they stay in order) and commits a write held back longer than its
   * bound (5 s) anyway.
   */
  readonly holdBack?: Effect.Effect<((write: JournalWrite) => boolean) | undefined>
  /**
   * SQL journals only: the `SqlClient` the journal writes through, and a way to run an effect in one
   * transaction on it (so a transactional activity's own writes and its recorded result commit together).
   */
  readonly sql?: {
    readonly client: unknown
    readonly withTransaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | JournalError, R>
  }
  /**
   * 2024: appends `event` (at `event.sequence`) to the event log of `persistenceId`, encoded with
   * `DurableExecutionEvent.schema(success, failure)`. Appending the same event again is a no-op; another
   * event at a taken sequence, or a storage failure that outlasts the retries, is a defect carrying a
   * `JournalError`. The engine does not use this log (see docs/workflows.md).
   */
  readonly append: <A, IA, E, IE>(
    persistenceId: string,
    success: Schema.Schema<A, IA>,
    failure: Schema.Schema<E, IE>,
    event: DurableExecutionEvent<A, E>
  ) => Effect.Effect<void>
  /**
   * 2024: the events of `persistenceId` with `sequence >= fromSequence`, in order. With `keepReading` the
   * stream does not end: it goes on with the events appended later (2024 ignored the flag).
   */
  readonly read: <A, IA, E, IE>(
    persistenceId: string,
    success: Schema.Schema<A, IA>,
    failure: Schema.Schema<E, IE>,
    fromSequence: number,
    keepReading: boolean
  ) => Stream.Stream<DurableExecutionEvent<A, E>>
}

/**
 * The 2024 type id of the journal service. Kept so that 2024 imports of it compile; the journals of this
 * package do not carry it (a journal is recognised by its tag, `DurableExecutionJournal`).
 *
 * @since 0.1.0
 * @category symbols
 */
export const DurableExecutionJournalTypeId: unique symbol = Symbol.for(
  "@effect-cluster/cluster-workflow/DurableExecutionJournal"
)

/**
 * @since 0.1.0
 * @category symbols
 */
export type DurableExecutionJournalTypeId = typeof DurableExecutionJournalTypeId

/**
 * The journal service (2024 name).
 *
 * @since 0.1.0
 * @category tags
 */
export class DurableExecutionJournal extends Context.Tag("@effect-cluster/cluster-workflow/DurableExecutionJournal")<
  DurableExecutionJournal,
  Journal
>() {}

/**
 * @since 0.1.0
 */
export declare namespace DurableExecutionJournal {
  /**
   * Options of the 2024 `DurableExecutionJournal.make` / `layer`: `table` is the name of the 2024 events
   * table and the prefix of the engine's tables beside it.
   *
   * @since 0.1.0
   * @category models
   */
  export interface MakeOptions {
    readonly table: string
    /**
     * Whose clock decides claim expiry: the database's (default) or, for tests on a `TestClock`, the
     * caller's (`"test"`); see `SqlJournalOptions.clock` of `DurableExecutionJournalSql`.
     */
    readonly clock?: "database" | "test" | undefined
  }
}
