/**
 * The statements of a group commit: the records of each kind of write and the set-based INSERT / fenced
 * UPDATE statements that apply a whole round of them at once.
 *
 * @internal
 */
import type * as Statement from "@effect/sql/Statement"
import type { JournalWrite } from "../journal.js"
import { formatVersion, isTerminal } from "../journal.js"
import type { SqlContext } from "./context.js"
import type { TimeFrame } from "./time.js"
import type { Row } from "./rows.js"
import { appendSource, compareKeys, eventSource, keyId, startSource, suspendSource } from "./rows.js"

/** @internal */
export type Start = Extract<JournalWrite, { _tag: "Start" }>
/** @internal */
export type Append = Extract<JournalWrite, { _tag: "Append" }>
/** @internal */
export type Suspend = Extract<JournalWrite, { _tag: "Suspend" }>
/** @internal */
export type Indexed<W> = { readonly index: number; readonly write: W }
/** @internal */
export type EventRecord = Record<(typeof eventSource.columns)[number][0], string | number>

/** A Start, possibly fused with the Append that follows it in the batch (see `commit`). */
export interface StartPlan extends Indexed<Start> {
  readonly fused: Indexed<Append> | undefined
}

/** A start's record; its claim's end relative to `time.base` (the database's time, see time.ts). */
export const startRecord = ({ fused, write }: StartPlan, time: TimeFrame) => {
  const record = {
    w: write.key.workflow,
    e: write.key.executionId,
    payload: write.payload,
    hash: write.payloadHash,
    version: write.version,
    parent: write.parent,
    status: "running" as string,
    owner: write.owner as string | null,
    until_: time.rel(write.claimUntil, write.now) as number | null,
    next_seq: 0,
    now_: write.now,
    updated_: write.now,
    result: null as string | null,
    completed_at: null as number | null
  }
  if (fused === undefined) return record
  // The row exactly as the in-memory journal leaves it after Start then this Append.
  const { events, now, update } = fused.write
  const terminal = update?.status !== undefined && isTerminal(update.status)
  record.status = update?.status ?? "running"
  record.owner = terminal ? null : write.owner
  record.until_ = terminal ? null : time.rel(write.claimUntil, write.now)
  record.next_seq = events.length === 0 ? 0 : events[events.length - 1]!.sequence + 1
  record.updated_ = update === undefined ? write.now : now
  record.result = update?.result ?? null
  record.completed_at = update?.completedAt ?? null
  return record
}

export const byKey = <W extends JournalWrite>(a: Indexed<W>, b: Indexed<W>) => compareKeys(a.write.key, b.write.key)
export const writeId = (write: JournalWrite) => keyId(write.key.workflow, write.key.executionId)

/**
 * Inserts the absent executions; returns the keys it created. A start fused with the append that
 * follows it (see `commit`) inserts the row as that append leaves it.
 */
export const insertStarts = ({ E, source, sql, time }: SqlContext, starts: ReadonlyArray<StartPlan>) =>
  sql<Row>`INSERT INTO ${E} (workflow, execution_id, payload, payload_hash, version, parent, status,
  claim_owner, claim_epoch, claim_until, cancel_requested, inbox_version, next_sequence, created_at, updated_at,
  result, completed_at, format_version)
SELECT v.w, v.e, v.payload, v.hash, v.version, v.parent, v.status, v.owner, 1, v.until_ + ${time.base}, 0, 0,
  v.next_seq, v.now_,
  v.updated_, v.result, v.completed_at, ${formatVersion}
FROM ${source(startSource, starts.map((start) => startRecord(start, time)))} WHERE true
ON CONFLICT DO NOTHING
RETURNING workflow, execution_id`

/**
 * The fenced update of the appends' rows: only where (owner, epoch) still holds the claim of a
 * non-terminal execution and the events continue its sequence. Returns the keys it updated; on
 * PostgreSQL the row lock it takes makes a concurrent claim wait for this transaction (docs/sql-schema.md).
 */
export const updateAppends = ({ E, source, sql, terminal }: SqlContext, appends: ReadonlyArray<Indexed<Append>>) =>
  sql<Row>`UPDATE ${E} AS x SET
  status = COALESCE(v.status, x.status),
  result = COALESCE(v.result, x.result),
  completed_at = COALESCE(v.completed_at, x.completed_at),
  cancel_requested = CASE WHEN v.cancel_handled = 1 THEN 0 ELSE x.cancel_requested END,
  claim_owner = CASE WHEN v.terminal = 1 THEN NULL ELSE x.claim_owner END,
  claim_until = CASE WHEN v.terminal = 1 THEN NULL ELSE x.claim_until END,
  suspended_on = CASE WHEN v.terminal = 1 THEN NULL ELSE x.suspended_on END,
  wake_at = CASE WHEN v.terminal = 1 THEN NULL ELSE x.wake_at END,
  updated_at = CASE WHEN v.touched = 1 THEN v.now_ ELSE x.updated_at END,
  next_sequence = COALESCE(v.next_seq, x.next_sequence)
FROM ${
    source(
      appendSource,
      appends.map(({ write }) => {
        const events = write.events
        const update = write.update
        return {
          w: write.key.workflow,
          e: write.key.executionId,
          owner: write.fence.owner,
          epoch: write.fence.epoch,
          first_seq: events.length === 0 ? null : events[0]!.sequence,
          next_seq: events.length === 0 ? null : events[events.length - 1]!.sequence + 1,
          status: update?.status ?? null,
          result: update?.result ?? null,
          completed_at: update?.completedAt ?? null,
          cancel_handled: update?.cancelHandled ? 1 : 0,
          terminal: update?.status !== undefined && isTerminal(update.status) ? 1 : 0,
          touched: update === undefined ? 0 : 1,
          now_: write.now
        }
      })
    )
  }
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = v.owner AND x.claim_epoch = v.epoch
  AND x.status NOT IN ${terminal} AND (v.first_seq IS NULL OR x.next_sequence <= v.first_seq)
RETURNING workflow, execution_id`

export const eventRecords = (appends: ReadonlyArray<Indexed<Append>>): Array<EventRecord> => {
  const records: Array<EventRecord> = []
  for (const { write } of appends) {
    for (const event of write.events) {
      records.push({
        w: write.key.workflow,
        e: write.key.executionId,
        seq: event.sequence,
        kind: event.kind,
        sk: event.stepKind,
        ss: event.stepScope,
        si: event.stepId,
        attempt: event.attempt,
        body: event.body
      })
    }
  }
  return records
}

/** Inserts events; `only` restricts them to the appends that took effect (a CTE of their keys). */
export const insertEvents = ({ V, source, sql }: SqlContext, records: ReadonlyArray<EventRecord>, only: Statement.Fragment) =>
  sql`INSERT INTO ${V} (workflow, execution_id, sequence, kind, step_kind, step_scope, step_id, attempt, body,
  format_version)
SELECT v.w, v.e, v.seq, v.kind, v.sk, v.ss, v.si, v.attempt, v.body, ${formatVersion} FROM ${
    source(eventSource, records)
  }${only}`

/** The fenced suspension, also requiring the inbox version the engine saw. Returns the keys it updated. */
export const updateSuspends = ({ E, source, sql, terminal }: SqlContext, suspends: ReadonlyArray<Indexed<Suspend>>) =>
  sql<Row>`UPDATE ${E} AS x SET status = 'suspended', suspended_on = v.susp, wake_at = v.wake,
  claim_owner = NULL, claim_until = NULL, updated_at = v.now_, suspended_inbox = v.inbox
FROM ${
    source(
      suspendSource,
      suspends.map(({ write }) => ({
        w: write.key.workflow,
        e: write.key.executionId,
        owner: write.fence.owner,
        epoch: write.fence.epoch,
        inbox: write.inboxVersion,
        susp: write.suspendedOn,
        wake: write.wakeAt,
        now_: write.now
      }))
    )
  }
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = v.owner AND x.claim_epoch = v.epoch
  AND x.status NOT IN ${terminal} AND x.inbox_version = v.inbox
RETURNING workflow, execution_id`

