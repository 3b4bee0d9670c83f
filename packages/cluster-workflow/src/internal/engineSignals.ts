/**
 * Signals, cancellation and resume: each stores its change in the journal, then wakes the execution
 * (tells the engine that runs it, or claims and resumes it here, or leaves it to other live engines).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ExecutionKey, ExecutionRow, JournalError } from "../DurableExecutionJournal.js"
import { isTerminal } from "../DurableExecutionJournal.js"
import { ExecutionNotFoundError } from "../WorkflowError.js"
import type { Engine } from "./engine.js"
import { enginesOf } from "./engineShared.js"
import type { ExecutionRuntime } from "./execution.js"
import { stuckFault } from "./faults.js"
import { invalidIdReason } from "./ids.js"
import { claimOrRetryLater } from "./lockedClaims.js"
import { keyString } from "./results.js"

/** Finds an execution of one of the engine's workflows by id. */
export const find = (
  engine: Engine,
  executionId: string
): Effect.Effect<ExecutionRow, ExecutionNotFoundError | JournalError> => {
  // An id no journal can hold (see `invalidIdReason`) names no execution: not found, without asking the
  // journal (PostgreSQL would refuse a U+0000 with a database error).
  if (invalidIdReason(executionId) !== undefined) return Effect.fail(new ExecutionNotFoundError({ executionId }))
  return Effect.gen(function*() {
    for (const workflow of engine.names) {
      const row = yield* engine.journal.get({ workflow, executionId })
      if (Option.isSome(row)) return row.value
    }
    return yield* new ExecutionNotFoundError({ executionId })
  })
}

/** Stores a signal in an execution's inbox and wakes or notifies the execution. */
export const signalKey = (
  engine: Engine,
  key: ExecutionKey,
  name: string,
  value: string
): Effect.Effect<{ readonly stored: string; readonly row: ExecutionRow }, ExecutionNotFoundError | JournalError> => {
  if (invalidIdReason(key.executionId) !== undefined) {
    return Effect.fail(new ExecutionNotFoundError({ executionId: key.executionId }))
  }
  return Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const result = yield* engine.liveness.announcing(engine.journal.signal(key, name, value, now))
    if (result === undefined) return yield* new ExecutionNotFoundError({ executionId: key.executionId })
    yield* wake(engine, result.row, (runtime) => runtime.deliverSignal(name, result.stored, result.row.inboxVersion))
    return result
  })
}

/**
 * After an inbox change (which made a suspended execution runnable): one running here is told; one
 * held by another live engine is left to it (told directly when that engine is in this process, through
 * the journal otherwise: NOTIFY on PostgreSQL, the data_version poll on SQLite); a runnable one is
 * claimed and resumed here, unless other live engines run its workflow: then this engine only passes
 * the change through and keeps no claim it might not run (a CLI, a webhook handler: issue 9 #9).
 */
export const wake = (
  engine: Engine,
  row: ExecutionRow,
  notify: (runtime: ExecutionRuntime) => void,
  /** `resume(id)` and the stuck retry at start ask for this engine's code: it runs the execution itself. */
  here = false
): Effect.Effect<void, JournalError> => {
  return Effect.catchTag(Effect.gen(function*() {
    if (isTerminal(row.status)) return
    const key = { workflow: row.workflow, executionId: row.executionId }
    const id = keyString(key)
    // (a suspended execution's runtime, if still here, is leaving: it no longer hears notifications)
    for (const other of row.status === "suspended" ? [] : [engine, ...enginesOf(engine.journal)]) {
      const runtime = other.live.get(id)
      if (runtime !== undefined) {
        notify(runtime)
        return
      }
    }
    const now = yield* Clock.currentTimeMillis
    const claimable = row.status === "suspended" || row.claimOwner === null || row.claimOwner === engine.owner ||
      (row.claimUntil ?? 0) < now
    if (!claimable) {
      for (const other of enginesOf(engine.journal)) {
        if (other !== engine && other.owner === row.claimOwner) other.liveness.onChange(key, id)
      }
      return
    }
    if (!here && (yield* engine.ownership.leaveToOthers(engine, key))) return
    yield* claimOrRetryLater(engine, key)
  }), "PayloadDecodeError", () => Effect.void) // logged where it was found; the input stays stored
}

/** Requests an execution's cancellation and wakes it. */
export const cancel = (
  engine: Engine,
  executionId: string
): Effect.Effect<"cancelled" | "already-finished", ExecutionNotFoundError | JournalError> => {
  return Effect.gen(function*() {
    const found = yield* find(engine, executionId)
    const now = yield* Clock.currentTimeMillis
    const row = yield* engine.liveness.announcing(engine.journal.requestCancel(found, now))
    if (row === undefined) return yield* new ExecutionNotFoundError({ executionId })
    if (isTerminal(row.status)) return "already-finished" as const
    yield* wake(engine, row, (runtime) => runtime.notifyCancel())
    return "cancelled" as const
  })
}

/**
 * Retries every stuck execution of the engine's workflows once (an engine starts: its code may carry them
 * on now). Runs in the background; an execution still stuck is logged again.
 */
export const retryStuck = (engine: Engine): Effect.Effect<void, JournalError> => Effect.gen(function*() {
  let after: ExecutionKey | undefined = undefined
  while (true) {
    const rows: ReadonlyArray<ExecutionRow> = yield* engine.journal.list({
      workflows: engine.names,
      status: "suspended",
      after,
      limit: 500
    })
    for (const row of rows) {
      if (stuckFault(row.suspendedOn) === undefined) continue
      if (yield* claimHere(engine, row)) continue
      const now = yield* Clock.currentTimeMillis
      const resumed = yield* engine.liveness.announcing(engine.journal.resume(row, now))
      if (resumed !== undefined) yield* wake(engine, resumed, () => {}, true)
    }
    if (rows.length < 500) return
    after = rows[rows.length - 1]
  }
})

/**
 * Claims a suspended execution for this engine and runs it (the claim makes it running): `resume(id)` and
 * the stuck retry ask for this engine's code. Marking it runnable first would announce it to every engine,
 * and another one (maybe with the old code) could take it first. False when the claim was not had.
 */
const claimHere = (engine: Engine, row: ExecutionRow): Effect.Effect<boolean, JournalError> =>
  row.status !== "suspended"
    ? Effect.succeed(false)
    : Effect.catchTag(claimOrRetryLater(engine, row), "PayloadDecodeError", () => Effect.succeed(false))

/** Resumes a suspended (or stuck) execution. */
export const resume = (
  engine: Engine,
  executionId: string
): Effect.Effect<void, ExecutionNotFoundError | JournalError> => {
  return Effect.gen(function*() {
    const found = yield* find(engine, executionId)
    if (yield* claimHere(engine, found)) return
    const now = yield* Clock.currentTimeMillis
    const row = yield* engine.liveness.announcing(engine.journal.resume(found, now))
    if (row === undefined) return yield* new ExecutionNotFoundError({ executionId })
    yield* wake(engine, row, () => {}, true)
  })
}