/**
 * The 2024 event log behind `Journal.append` / `Journal.read`: an encoded store of (persistence id,
 * sequence, event JSON) rows, in memory or in the 2024 SQL table (internal/sql/eventLog.ts), and the typed
 * methods over it, which own the `DurableExecutionEvent` codec.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as DurableExecutionEvent from "../DurableExecutionEvent.js"
import type { Journal } from "./journal.js"
import { JournalError } from "./journal.js"

/** One stored event (encoded). */
export interface EventLogRow {
  readonly sequence: number
  readonly json: string
}

/** An encoded event log. */
export interface EventLogStore {
  /** Inserts the row unless its (persistenceId, sequence) is taken; returns the JSON stored there before. */
  readonly insert: (
    persistenceId: string,
    sequence: number,
    json: string
  ) => Effect.Effect<string | undefined, JournalError>
  /** The rows of `persistenceId` with `sequence >= fromSequence`, in order. */
  readonly select: (persistenceId: string, fromSequence: number) => Effect.Effect<ReadonlyArray<EventLogRow>, JournalError>
  /**
   * Completes after `since` (from `changes`) if anything may have been appended since then: at once on a
   * local append; a store shared with other processes also wakes periodically.
   */
  readonly waitForChange: (since: Deferred.Deferred<void>) => Effect.Effect<void>
  /** The signal of the next local append. */
  readonly changes: () => Deferred.Deferred<void>
}

/** A notifier of local appends (no lost wake-up: a reader captures the signal before it reads). */
export const makeChanges = () => {
  let next = Deferred.unsafeMake<void>(FiberId.none)
  return {
    current: () => next,
    notify: () => {
      const done = next
      next = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(done, Exit.void)
    }
  }
}

/** An event log in memory (one per call). */
export const memory = (): EventLogStore => {
  const logs = new Map<string, Map<number, string>>()
  const changes = makeChanges()
  return {
    insert: (persistenceId, sequence, json) =>
      Effect.sync(() => {
        let log = logs.get(persistenceId)
        if (log === undefined) logs.set(persistenceId, log = new Map())
        const existing = log.get(sequence)
        if (existing !== undefined) return existing
        log.set(sequence, json)
        changes.notify()
        return undefined
      }),
    select: (persistenceId, fromSequence) =>
      Effect.sync(() =>
        Array.from(logs.get(persistenceId) ?? [], ([sequence, json]) => ({ sequence, json }))
          .filter((row) => row.sequence >= fromSequence)
          .sort((a, b) => a.sequence - b.sequence)
      ),
    waitForChange: (since) => Deferred.await(since),
    changes: changes.current
  }
}

// One codec per (success, failure) pair; weak, so schemas built per call (as the seed's are) are not kept.
const codecs = new WeakMap<object, WeakMap<object, Schema.Schema<any, any>>>()
const codecOf = (success: Schema.Schema<any, any>, failure: Schema.Schema<any, any>) => {
  let bySuccess = codecs.get(success)
  if (bySuccess === undefined) codecs.set(success, bySuccess = new WeakMap())
  let codec = bySuccess.get(failure)
  if (codec === undefined) bySuccess.set(failure, codec = Schema.parseJson(DurableExecutionEvent.schema(success, failure)))
  return codec
}

const defect = (operation: string, message: string) =>
  Effect.die(new JournalError({ operation, message, retryable: false }))

/** The typed 2024 methods over a store. */
export const methods = (store: EventLogStore): Pick<Journal, "append" | "read"> => ({
  append: (persistenceId, success, failure, event) =>
    Effect.gen(function*() {
      const codec = codecOf(success, failure)
      const json = yield* Effect.orDie(Schema.encode(codec)(event))
      const existing = yield* Effect.orDie(store.insert(persistenceId, event.sequence, json))
      if (existing !== undefined && existing !== json) {
        return yield* defect(
          "append",
          `sequence ${event.sequence} of "${persistenceId}" already holds another event (${existing})`
        )
      }
    }),
  read: (persistenceId, success, failure, fromSequence, keepReading) => {
    const decode = Schema.decode(codecOf(success, failure))
    type Cursor = { readonly from: number; readonly since: Deferred.Deferred<void> | undefined }
    return Stream.paginateChunkEffect<Cursor, any, never, never>({ from: fromSequence, since: undefined }, (cursor) =>
      Effect.gen(function*() {
        if (cursor.since !== undefined) yield* store.waitForChange(cursor.since)
        const since = store.changes()
        const rows = yield* Effect.orDie(store.select(persistenceId, cursor.from))
        const events = yield* Effect.orDie(Effect.forEach(rows, (row) => decode(row.json)))
        const from = rows.length === 0 ? cursor.from : rows[rows.length - 1]!.sequence + 1
        return [Chunk.unsafeFromArray(events), keepReading ? Option.some({ from, since }) : Option.none()] as const
      }))
  }
})
