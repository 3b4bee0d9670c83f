/**
 * The in-memory journal: zero set-up, for tests, the browser and single-process programs.
 *
 * It stores the same encoded rows as the SQL journals (JSON text through the schemas), so behaviour
 * observed in memory is the behaviour on disk, except durability across process restarts.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type {
  ClaimResult,
  EventRow,
  ExecutionKey,
  ExecutionRow,
  Journal,
  JournalWrite,
  ListOptions,
  SignalRow,
  WriteResult
} from "./DurableExecutionJournal.js"
import { DurableExecutionJournal, formatVersion, isTerminal } from "./DurableExecutionJournal.js"
import * as EventLog from "./internal/eventLog.js"

interface Entry {
  row: ExecutionRow
  /** Trimmed to its length whenever the execution comes to rest (see `rest`). */
  events: Array<EventRow>
  /** Created with the first signal: most executions never get one. */
  signals: Map<string, SignalRow> | undefined
  /** The inbox version its last suspension saw. */
  suspendedInbox: number | undefined
}

/** The journal's whole state: one entry per execution, by workflow name, then execution id. */
type Store = Map<string, Map<string, Entry>>

const find = (store: Store, key: ExecutionKey): Entry | undefined => store.get(key.workflow)?.get(key.executionId)

function* entries(store: Store): Iterable<Entry> {
  for (const executions of store.values()) yield* executions.values()
}

const compareKeys = (a: ExecutionKey, b: ExecutionKey): number =>
  a.workflow < b.workflow ? -1 : a.workflow > b.workflow ? 1 : a.executionId < b.executionId ? -1 : a.executionId >
      b.executionId ? 1 : 0

const keyOf = (row: ExecutionRow): ExecutionKey => ({ workflow: row.workflow, executionId: row.executionId })

/** The rows matching `keep`, sorted by `order`, at most `limit` of them. */
const select = (
  store: Store,
  keep: (entry: Entry) => boolean,
  order: (a: ExecutionRow, b: ExecutionRow) => number,
  limit: number
): Array<ExecutionRow> => {
  const found: Array<ExecutionRow> = []
  for (const entry of entries(store)) if (keep(entry)) found.push(entry.row)
  found.sort(order)
  return found.slice(0, limit)
}

/** Whether `owner` holds the unfinished execution's claim at `epoch`. */
const holds = (row: ExecutionRow, owner: string, epoch: number) =>
  row.claimOwner === owner && row.claimEpoch === epoch && !isTerminal(row.status)

/** Whether a running execution may be claimed by `owner`: unclaimed, its own, or its claim has expired. */
const claimable = (row: ExecutionRow, owner: string, now: number) =>
  row.claimOwner === null || row.claimOwner === owner || (row.claimUntil !== null && row.claimUntil < now)

// ---------------------------------------------------------------------------------------------------------
// Writes (group-committed by the engine; each applied in one synchronous step)
// ---------------------------------------------------------------------------------------------------------

const newRow = (write: Extract<JournalWrite, { _tag: "Start" }>): ExecutionRow => ({
  workflow: write.key.workflow,
  executionId: write.key.executionId,
  payload: write.payload,
  payloadHash: write.payloadHash,
  version: write.version,
  parent: write.parent,
  status: "running",
  suspendedOn: null,
  wakeAt: null,
  result: null,
  claimOwner: write.owner,
  claimEpoch: 1,
  claimUntil: write.claimUntil,
  cancelRequested: false,
  inboxVersion: 0,
  createdAt: write.now,
  updatedAt: write.now,
  completedAt: null,
  formatVersion
})

const applyStart = (store: Store, write: Extract<JournalWrite, { _tag: "Start" }>): WriteResult => {
  let executions = store.get(write.key.workflow)
  if (executions === undefined) store.set(write.key.workflow, executions = new Map())
  const entry = executions.get(write.key.executionId)
  if (entry !== undefined) return { _tag: "Exists", row: entry.row }
  // every field in the literal: one hidden class, no property array added later
  executions.set(write.key.executionId, { row: newRow(write), events: [], signals: undefined, suspendedInbox: undefined })
  return { _tag: "Created", epoch: 1 }
}

/**
 * An execution that suspends or finishes may stay in the store for long: its event array drops the spare
 * capacity that `push` leaves (up to 16 slots, more than a short workflow's events).
 */
const rest = (entry: Entry) => {
  entry.events = entry.events.slice()
}

const applyAppend = (store: Store, write: Extract<JournalWrite, { _tag: "Append" }>): WriteResult => {
  const entry = find(store, write.key)
  if (entry === undefined || !holds(entry.row, write.fence.owner, write.fence.epoch)) return { _tag: "Fenced" }
  let last = entry.events.length === 0 ? -1 : entry.events[entry.events.length - 1]!.sequence
  for (const event of write.events) {
    // The (execution, sequence) primary key of the SQL journals: sequences only grow.
    if (event.sequence <= last) return { _tag: "Fenced" }
    last = event.sequence
  }
  for (const event of write.events) entry.events.push(event)
  const update = write.update
  if (update !== undefined) {
    const terminal = update.status !== undefined && isTerminal(update.status)
    entry.row = {
      ...entry.row,
      status: update.status ?? entry.row.status,
      result: update.result ?? entry.row.result,
      completedAt: update.completedAt ?? entry.row.completedAt,
      cancelRequested: update.cancelHandled ? false : entry.row.cancelRequested,
      claimOwner: terminal ? null : entry.row.claimOwner,
      claimUntil: terminal ? null : entry.row.claimUntil,
      suspendedOn: terminal ? null : entry.row.suspendedOn,
      wakeAt: terminal ? null : entry.row.wakeAt,
      updatedAt: write.now
    }
    if (terminal) rest(entry)
  }
  // in the same synchronous step as the append: nothing can see one without the other
  if (write.deliver !== undefined) {
    storeSignal(store, write.deliver.key, write.deliver.name, write.deliver.value, write.now)
  }
  return { _tag: "Ok" }
}

const applySuspend = (store: Store, write: Extract<JournalWrite, { _tag: "Suspend" }>): WriteResult => {
  const entry = find(store, write.key)
  if (entry === undefined || !holds(entry.row, write.fence.owner, write.fence.epoch)) return { _tag: "Fenced" }
  if (entry.row.inboxVersion !== write.inboxVersion) return { _tag: "InboxChanged" }
  entry.row = {
    ...entry.row,
    status: "suspended",
    suspendedOn: write.suspendedOn,
    wakeAt: write.wakeAt,
    claimOwner: null,
    claimUntil: null,
    updatedAt: write.now
  }
  entry.suspendedInbox = write.inboxVersion
  rest(entry)
  return { _tag: "Ok" }
}

const applyWrite = (store: Store, write: JournalWrite): WriteResult => {
  switch (write._tag) {
    case "Start":
      return applyStart(store, write)
    case "Append":
      return applyAppend(store, write)
    case "Suspend":
      return applySuspend(store, write)
  }
}

// ---------------------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------------------

const claims = (store: Store): Pick<Journal, "claim" | "renew" | "release" | "resumable" | "nextClaimExpiry"> => ({
  claim: (key, owner, now, claimUntil) =>
    Effect.sync((): ClaimResult => {
      const entry = find(store, key)
      if (entry === undefined) return { _tag: "Unavailable", row: undefined }
      const row = entry.row
      if (isTerminal(row.status) || !claimable(row, owner, now)) return { _tag: "Unavailable", row }
      entry.row = {
        ...row,
        status: "running",
        suspendedOn: null,
        wakeAt: null,
        claimOwner: owner,
        claimEpoch: row.claimEpoch + 1,
        claimUntil,
        updatedAt: now
      }
      return { _tag: "Claimed", row: entry.row }
    }),
  renew: (owner, claimed, claimUntil) =>
    Effect.sync(() =>
      claimed.map(({ epoch, key }) => {
        const entry = find(store, key)
        if (entry === undefined || !holds(entry.row, owner, epoch)) return undefined
        entry.row = { ...entry.row, claimUntil }
        return entry.row
      })
    ),
  release: (owner, claimed) =>
    Effect.sync(() => {
      let released = 0
      for (const { epoch, key } of claimed) {
        const entry = find(store, key)
        if (entry === undefined || entry.row.status !== "running" || !holds(entry.row, owner, epoch)) continue
        entry.row = { ...entry.row, claimOwner: null, claimUntil: null }
        released++
      }
      return released
    }),
  resumable: (workflows, owner, now, limit) =>
    Effect.sync(() =>
      select(
        store,
        ({ row }) => row.status === "running" && workflows.includes(row.workflow) && claimable(row, owner, now),
        (a, b) => a.createdAt - b.createdAt || compareKeys(a, b),
        limit
      ).map(keyOf)
    ),
  nextClaimExpiry: (workflows, owner) =>
    Effect.sync(() => {
      let next: { owner: string; claimUntil: number } | undefined
      for (const { row } of entries(store)) {
        if (
          row.status === "running" && row.claimOwner !== null && row.claimOwner !== owner &&
          row.claimUntil !== null && workflows.includes(row.workflow) &&
          (next === undefined || row.claimUntil < next.claimUntil)
        ) next = { owner: row.claimOwner, claimUntil: row.claimUntil }
      }
      return next
    })
})

// ---------------------------------------------------------------------------------------------------------
// Inbox: signals, cancellation, resumes, and suspensions that missed a change of their inbox
// ---------------------------------------------------------------------------------------------------------

/** Puts a signal in the inbox unless one with that name is there (first wins); bumps the version. */
const storeSignal = (store: Store, key: ExecutionKey, name: string, value: string, now: number) => {
  const entry = find(store, key)
  if (entry === undefined) return undefined
  const existing = entry.signals?.get(name)
  if (existing !== undefined) return { stored: existing.value, row: entry.row }
  entry.signals ??= new Map()
  entry.signals.set(name, { name, value, createdAt: now })
  entry.row = { ...entry.row, inboxVersion: entry.row.inboxVersion + 1, updatedAt: now }
  return { stored: value, row: entry.row }
}

/** A parent suspended on a child that is terminal while the child's result is not in its inbox. */
const missesChildResult = (store: Store, parent: Entry) => {
  if (!(parent.row.suspendedOn ?? "").includes("child")) return false
  for (const child of entries(store)) {
    if (child.row.parent === null || !isTerminal(child.row.status)) continue
    let link: { workflow?: unknown; executionId?: unknown; signal?: unknown }
    try {
      link = JSON.parse(child.row.parent)
    } catch {
      continue
    }
    if (
      link?.workflow === parent.row.workflow && link.executionId === parent.row.executionId &&
      typeof link.signal === "string" && parent.signals?.has(link.signal) !== true
    ) return true
  }
  return false
}

/** A suspended execution that must run again: cancelled, or its inbox changed after it suspended. */
const isStale = (store: Store, entry: Entry) =>
  entry.row.cancelRequested ||
  (entry.suspendedInbox !== undefined && entry.row.inboxVersion > entry.suspendedInbox) ||
  missesChildResult(store, entry)

const inbox = (store: Store): Pick<Journal, "signals" | "signal" | "requestCancel" | "resume" | "staleSuspensions"> => ({
  signals: (key) => Effect.sync(() => Array.from(find(store, key)?.signals?.values() ?? [])),
  signal: (key, name, value, now) => Effect.sync(() => storeSignal(store, key, name, value, now)),
  requestCancel: (key, now) =>
    Effect.sync(() => {
      const entry = find(store, key)
      if (entry === undefined) return undefined
      if (isTerminal(entry.row.status)) return entry.row
      entry.row = { ...entry.row, cancelRequested: true, inboxVersion: entry.row.inboxVersion + 1, updatedAt: now }
      return entry.row
    }),
  resume: (key, now) =>
    Effect.sync(() => {
      const entry = find(store, key)
      if (entry === undefined) return undefined
      if (entry.row.status === "suspended") {
        entry.row = {
          ...entry.row,
          status: "running",
          suspendedOn: null,
          wakeAt: null,
          inboxVersion: entry.row.inboxVersion + 1,
          updatedAt: now
        }
      }
      return entry.row
    }),
  staleSuspensions: (workflows, limit) =>
    Effect.sync(() =>
      select(
        store,
        (entry) =>
          entry.row.status === "suspended" && workflows.includes(entry.row.workflow) && isStale(store, entry),
        compareKeys,
        limit
      ).map(keyOf)
    )
})

// ---------------------------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------------------------

const timers = (store: Store): Pick<Journal, "nextWakeAt" | "dueTimers"> => ({
  nextWakeAt: (workflows) =>
    Effect.sync(() => {
      let earliest: number | undefined
      for (const { row } of entries(store)) {
        if (row.status === "suspended" && row.wakeAt !== null && workflows.includes(row.workflow)) {
          if (earliest === undefined || row.wakeAt < earliest) earliest = row.wakeAt
        }
      }
      return earliest
    }),
  dueTimers: (workflows, now, limit) =>
    Effect.sync(() =>
      select(
        store,
        ({ row }) =>
          row.status === "suspended" && row.wakeAt !== null && row.wakeAt <= now && workflows.includes(row.workflow),
        (a, b) => a.wakeAt! - b.wakeAt! || compareKeys(a, b),
        limit
      ).map(keyOf)
    )
})

// ---------------------------------------------------------------------------------------------------------
// Reads, listing and retention
// ---------------------------------------------------------------------------------------------------------

const reads = (store: Store): Pick<Journal, "get" | "events" | "list" | "deleteCompleted"> => ({
  get: (key) => Effect.sync(() => Option.fromNullable(find(store, key)?.row)),
  events: (key, fromSequence) =>
    Effect.sync(() => {
      const entry = find(store, key)
      if (entry === undefined) return []
      return fromSequence <= 0 ? entry.events.slice() : entry.events.filter((e) => e.sequence >= fromSequence)
    }),
  list: (options: ListOptions) =>
    Effect.sync(() =>
      select(
        store,
        ({ row }) =>
          options.workflows.includes(row.workflow) &&
          (options.status === undefined || row.status === options.status) &&
          (options.after === undefined || compareKeys(row, options.after) > 0),
        compareKeys,
        options.limit
      )
    ),
  deleteCompleted: (before) =>
    Effect.sync(() => {
      let deleted = 0
      for (const executions of store.values()) {
        for (const [id, entry] of executions) {
          if (isTerminal(entry.row.status) && entry.row.completedAt !== null && entry.row.completedAt < before) {
            executions.delete(id)
            deleted++
          }
        }
      }
      return deleted
    })
})

/**
 * Builds an in-memory journal. Each call gets its own empty store.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Journal> = Effect.sync(() => {
  const store: Store = new Map()
  const journal: Journal = {
    commit: (writes) => Effect.sync(() => writes.map((write) => applyWrite(store, write))),
    ...reads(store),
    ...claims(store),
    ...inbox(store),
    ...timers(store),
    // 2024's append/read: its own event log (honouring fromSequence and keepReading, which 2024 ignored)
    ...EventLog.methods(EventLog.memory())
  }
  return journal
})

/**
 * A layer with a fresh in-memory journal.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DurableExecutionJournal> = Layer.effect(DurableExecutionJournal, make)

/**
 * The 2024 name of the in-memory journal layer. Each build of the layer gets its own empty journal.
 *
 * @since 0.1.0
 * @category layers
 */
export const activityJournalInMemory: Layer.Layer<DurableExecutionJournal> = layer
