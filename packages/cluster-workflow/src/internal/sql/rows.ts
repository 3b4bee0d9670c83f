/**
 * The SQL journal's rows: decoding the driver's values (pg BIGINT strings, libsql bigints), the column
 * lists, and the record sources through which a whole batch travels as ONE JSON parameter.
 *
 * @internal
 */
import type { EventRow, ExecutionKey, ExecutionRow, ExecutionStatus, SignalRow } from "../journal.js"

/** @internal */
export type Row = Record<string, unknown>


/** pg returns BIGINT as a string, libsql may return bigint (intMode), SQLite INTEGER as number. */
export const num = (u: unknown): number => typeof u === "number" ? u : typeof u === "bigint" ? Number(u) : Number(u)
export const numOrNull = (u: unknown): number | null => u === null || u === undefined ? null : num(u)
export const str = (u: unknown): string =>
  typeof u === "string" ? u : u === null || u === undefined ? "" : u instanceof ArrayBuffer ?
  new TextDecoder().decode(u) : String(u)
export const strOrNull = (u: unknown): string | null => u === null || u === undefined ? null : str(u)
export const bool = (u: unknown): boolean => u === true || (u !== false && u !== null && u !== undefined && num(u) !== 0)

export const executionColumns = "workflow, execution_id, payload, payload_hash, version, parent, status, suspended_on, " +
  "wake_at, result, claim_owner, claim_epoch, claim_until, cancel_requested, inbox_version, created_at, " +
  "updated_at, completed_at, format_version"

export const executionColumnsOf = (alias: string) =>
  executionColumns.split(", ").map((column) => `${alias}.${column}`).join(", ")

export const decodeExecution = (r: Record<string, unknown>): ExecutionRow => ({
  workflow: str(r.workflow),
  executionId: str(r.execution_id),
  payload: str(r.payload),
  payloadHash: str(r.payload_hash),
  version: str(r.version),
  parent: strOrNull(r.parent),
  // Opaque at this layer: the engine validates the status it reads.
  status: str(r.status) as ExecutionStatus,
  suspendedOn: strOrNull(r.suspended_on),
  wakeAt: numOrNull(r.wake_at),
  result: strOrNull(r.result),
  claimOwner: strOrNull(r.claim_owner),
  claimEpoch: num(r.claim_epoch),
  claimUntil: numOrNull(r.claim_until),
  cancelRequested: bool(r.cancel_requested),
  inboxVersion: num(r.inbox_version),
  createdAt: num(r.created_at),
  updatedAt: num(r.updated_at),
  completedAt: numOrNull(r.completed_at),
  formatVersion: num(r.format_version)
})

export const decodeEvent = (r: Record<string, unknown>): EventRow => ({
  sequence: num(r.sequence),
  kind: str(r.kind),
  stepKind: str(r.step_kind),
  stepScope: str(r.step_scope),
  stepId: str(r.step_id),
  attempt: num(r.attempt),
  body: str(r.body)
})

export const decodeSignal = (r: Record<string, unknown>): SignalRow => ({
  name: str(r.name),
  value: str(r.value),
  createdAt: num(r.created_at)
})

export const keyId = (workflow: string, executionId: string): string => JSON.stringify([workflow, executionId])
export const rowKeyId = (r: Record<string, unknown>): string => keyId(str(r.workflow), str(r.execution_id))

export const compareKeys = (a: ExecutionKey, b: ExecutionKey): number =>
  a.workflow < b.workflow ? -1 : a.workflow > b.workflow ? 1 : a.executionId < b.executionId ? -1 : a.executionId >
      b.executionId ? 1 : 0

export const terminalStatuses = "('completed', 'failed', 'cancelled')"


export type ColumnType = "text" | "bigint"

export interface RecordSource<K extends string> {
  readonly columns: ReadonlyArray<readonly [K, ColumnType]>
  readonly pg: string
  readonly sqlite: string
  /** The column names, comma-separated. */
  readonly names: string
}

export const recordSource = <K extends string>(columns: ReadonlyArray<readonly [K, ColumnType]>): RecordSource<K> => ({
  columns,
  pg: columns.map(([name, type]) => `${name} ${type}`).join(", "),
  names: columns.map(([name]) => name).join(", "),
  sqlite: columns.map(([name]) => `json_extract(value, '$.${name}') AS ${name}`).join(", ")
})

export const startSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["payload", "text"],
  ["hash", "text"],
  ["version", "text"],
  ["parent", "text"],
  ["status", "text"],
  ["owner", "text"],
  ["until_", "bigint"],
  ["next_seq", "bigint"],
  ["now_", "bigint"],
  ["updated_", "bigint"],
  ["result", "text"],
  ["completed_at", "bigint"]
])

export const appendSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["owner", "text"],
  ["epoch", "bigint"],
  ["first_seq", "bigint"],
  ["next_seq", "bigint"],
  ["status", "text"],
  ["result", "text"],
  ["completed_at", "bigint"],
  ["cancel_handled", "bigint"],
  ["terminal", "bigint"],
  ["touched", "bigint"],
  ["now_", "bigint"]
])

export const eventSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["seq", "bigint"],
  ["kind", "text"],
  ["sk", "text"],
  ["ss", "text"],
  ["si", "text"],
  ["attempt", "bigint"],
  ["body", "text"]
])

export const suspendSource = recordSource([
  ["w", "text"],
  ["e", "text"],
  ["owner", "text"],
  ["epoch", "bigint"],
  ["inbox", "bigint"],
  ["susp", "text"],
  ["wake", "bigint"],
  ["now_", "bigint"]
])

export const keySource = recordSource([["w", "text"], ["e", "text"]])

export const renewSource = recordSource([["w", "text"], ["e", "text"], ["epoch", "bigint"]])
