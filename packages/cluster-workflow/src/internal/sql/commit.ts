/**
 * The SQL journal's group commit: a batch of writes planned into rounds (the n-th write of each
 * execution in round n), each round applied set-based, and one result per write.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { EventRow, JournalWrite, WriteResult } from "../journal.js"
import { isTerminal, JournalError } from "../journal.js"
import type { SqlContext } from "./context.js"
import { inTransaction, withRetries } from "./retry.js"
import type { Round } from "./rounds.js"
import { applyRound } from "./rounds.js"
import type { Append, Indexed, StartPlan, Suspend } from "./statements.js"
import { byKey, writeId } from "./statements.js"
import { storeSignal } from "./inbox.js"

/** Whether events continue a fresh execution (no events yet): they must grow from 0. */
const increasing = (events: ReadonlyArray<EventRow>) => {
  for (let i = 1; i < events.length; i++) {
    if (events[i]!.sequence <= events[i - 1]!.sequence) return false
  }
  return true
}

/**
 * Plans a batch: appends whose event sequences do not grow are fenced at once (in `results`), the rest
 * go to rounds.
 */
const plan = (writes: ReadonlyArray<JournalWrite>, results: Array<WriteResult | undefined>): Array<Round> => {
  // The writes of each execution, in order. Appends whose event sequences do not grow are fenced now
  // (like the in-memory journal; a refused write changes nothing, so the others are unaffected).
  const byExecution = new Map<string, Array<Indexed<JournalWrite>>>()
  writes.forEach((write, index) => {
    if (write._tag === "Append" && !increasing(write.events)) {
      results[index] = { _tag: "Fenced" }
      return
    }
    const id = writeId(write)
    const list = byExecution.get(id)
    if (list === undefined) byExecution.set(id, [{ index, write }])
    else list.push({ index, write })
  })
  // Rounds: the n-th write of each execution goes to round n, so a round touches each row at most once
  // (a set-based UPDATE ... FROM applies one source row per target row) and writes of one execution
  // apply in order. A Start followed by an Append that its own claim allows (owner, epoch 1, events from
  // sequence 0) is fused into the Start: the row is inserted as the Append leaves it, so a new
  // execution's first commit is one statement. The writes after a Start take effect only if it created
  // the execution (see `JournalWrite`).
  const rounds: Array<Round> = []
  const roundAt = (n: number) => rounds[n] ?? (rounds[n] = { starts: [], appends: [], suspends: [] })
  for (const list of byExecution.values()) {
    let n = 0
    for (let i = 0; i < list.length; i++, n++) {
      const { index, write } = list[i]!
      switch (write._tag) {
        case "Start": {
          const next = list[i + 1]
          const fusable = i === 0 && next !== undefined && next.write._tag === "Append" &&
            next.write.fence.owner === write.owner && next.write.fence.epoch === 1 &&
            (next.write.events.length === 0 || next.write.events[0]!.sequence >= 0)
          if (fusable) i++
          roundAt(n).starts.push({ index, write, fused: fusable ? next as Indexed<Append> : undefined })
          break
        }
        case "Append":
          roundAt(n).appends.push({ index, write })
          break
        case "Suspend":
          roundAt(n).suspends.push({ index, write })
          break
      }
    }
  }
  // A stable lock order across engines (fewer deadlocks between concurrent batches).
  for (const round of rounds) {
    round.starts.sort(byKey)
    round.appends.sort(byKey)
    round.suspends.sort(byKey)
  }
  return rounds
}

/** The round without the writes of `executions`, which are answered Fenced in `results`. */
const withoutExecutions = (
  round: Round,
  executions: ReadonlySet<string>,
  results: Array<WriteResult | undefined>
): Round => {
  const keep = <W extends Indexed<JournalWrite>>(writes: ReadonlyArray<W>, fused?: (write: W) => number | undefined) =>
    writes.filter((planned) => {
      if (!executions.has(writeId(planned.write))) return true
      results[planned.index] = { _tag: "Fenced" }
      const carried = fused?.(planned)
      if (carried !== undefined) results[carried] = { _tag: "Fenced" }
      return false
    })
  return {
    starts: keep(round.starts, (start) => start.fused?.index),
    appends: keep(round.appends),
    suspends: keep(round.suspends)
  }
}

/** Applies the rounds in order and fills in one result per write. */
const applyRounds = (
  ctx: SqlContext,
  rounds: ReadonlyArray<Round>,
  results: Array<WriteResult | undefined>
) =>
  Effect.gen(function*() {
    // executions whose Start found them: their later writes in this batch are fenced, not applied
    const notCreated = new Set<string>()
    for (const planned of rounds) {
      const round = notCreated.size === 0 ? planned : withoutExecutions(planned, notCreated, results)
      const applied = yield* applyRound(ctx, round)
      const toRead: Array<StartPlan | Indexed<Suspend>> = []
      for (const start of round.starts) {
        const id = writeId(start.write)
        if (applied.created.has(id)) {
          results[start.index] = { _tag: "Created", epoch: 1 }
          if (start.fused !== undefined) results[start.fused.index] = { _tag: "Ok" }
          continue
        }
        notCreated.add(id)
        if (start.fused !== undefined) results[start.fused.index] = { _tag: "Fenced" }
        const row = applied.existing.get(id)
        if (row !== undefined) results[start.index] = { _tag: "Exists", row }
        else toRead.push(start)
      }
      for (const { index, write } of round.appends) {
        results[index] = applied.appended.has(writeId(write)) ? { _tag: "Ok" } : { _tag: "Fenced" }
      }
      for (const suspend of round.suspends) {
        if (applied.suspended.has(writeId(suspend.write))) results[suspend.index] = { _tag: "Ok" }
        else toRead.push(suspend)
      }
      if (toRead.length === 0) continue
      // Refused suspensions (a lost claim, or a changed inbox), and starts that met a row inserted
      // concurrently with the statement: one read. Epochs only grow, so a claim seen lost stays lost.
      const rows = yield* ctx.selectRows(toRead.map(({ write }) => write.key))
      for (const { index, write } of toRead) {
        const row = rows.get(writeId(write))
        if (write._tag === "Start") {
          if (row === undefined) {
            // Conflicted with a row that a concurrent retention run deleted: let the caller retry.
            return yield* new JournalError({
              operation: "commit",
              message: "A started execution disappeared concurrently; retry the commit",
              retryable: true
            })
          }
          results[index] = { _tag: "Exists", row }
        } else {
          const holds = row !== undefined && row.claimOwner === write.fence.owner &&
            row.claimEpoch === write.fence.epoch && !isTerminal(row.status)
          results[index] = holds ? { _tag: "InboxChanged" } : { _tag: "Fenced" }
        }
      }
    }
    return results as Array<WriteResult>
  })

/**
 * Stores the deliveries of the appends that took effect (a child's result in its parent's inbox), in the
 * batch's transaction: the append and its delivery commit together or not at all.
 */
const applyDeliveries = (
  ctx: SqlContext,
  writes: ReadonlyArray<JournalWrite>,
  results: ReadonlyArray<WriteResult>
) =>
  Effect.forEach(writes, (write, index) =>
    write._tag === "Append" && write.deliver !== undefined && results[index]?._tag === "Ok"
      ? Effect.asVoid(storeSignal(ctx, write.deliver.key, write.deliver.name, write.deliver.value, write.now))
      : Effect.void, { discard: true })

/**
 * Commits a batch of writes: one result per write, in order. One round on PostgreSQL is one statement
 * (atomic on its own); otherwise (or when an append delivers a signal) the rounds run in one transaction.
 *
 * @internal
 */
export const commit = (
  ctx: SqlContext,
  writes: ReadonlyArray<JournalWrite>
): Effect.Effect<ReadonlyArray<WriteResult>, JournalError> => {
  if (writes.length === 0) return Effect.succeed([])
  const results: Array<WriteResult | undefined> = new Array(writes.length)
  const rounds = plan(writes, results)
  const delivers = writes.some((write) => write._tag === "Append" && write.deliver !== undefined)
  const applied = applyRounds(ctx, rounds, results)
  const apply = delivers
    ? Effect.tap(applied, (done) => applyDeliveries(ctx, writes, done))
    : applied
  const single = ctx.dialect === "pg" && rounds.length <= 1 && !delivers
  return withRetries(ctx.retries, "commit", single ? apply : inTransaction(ctx.sql.withTransaction, apply))
}
