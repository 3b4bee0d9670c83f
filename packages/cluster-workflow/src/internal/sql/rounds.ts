/**
 * Applying one round of a group commit (at most one write per execution): on SQLite one statement per
 * kind of write, on PostgreSQL the whole round as ONE statement of data-modifying CTEs.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import type { ExecutionRow } from "../journal.js"
import type { SqlContext } from "./context.js"
import type { Row } from "./rows.js"
import { decodeExecution, executionColumns, keySource, rowKeyId } from "./rows.js"
import type { Append, Indexed, StartPlan, Suspend } from "./statements.js"
import { eventRecords, insertEvents, insertStarts, updateAppends, updateSuspends, writeId } from "./statements.js"

export interface Round {
  readonly starts: Array<StartPlan>
  readonly appends: Array<Indexed<Append>>
  readonly suspends: Array<Indexed<Suspend>>
}

export interface Applied {
  readonly created: ReadonlySet<string>
  /** The rows of the starts that were not created, as they were before this round. */
  readonly existing: ReadonlyMap<string, ExecutionRow>
  readonly appended: ReadonlySet<string>
  readonly suspended: ReadonlySet<string>
}

const idsOf = (rows: ReadonlyArray<Row>) => new Set(rows.map(rowKeyId))
const none: ReadonlySet<string> = new Set()
const noRows: ReadonlyMap<string, ExecutionRow> = new Map()

/** SQLite: one statement per kind of write (in-process, so statements are cheap). */
const applySqlite = (ctx: SqlContext, round: Round): Effect.Effect<Applied, SqlError> =>
  Effect.gen(function*() {
    const { selectRows, sql } = ctx
    let created = none
    let existing = noRows
    if (round.starts.length > 0) {
      created = idsOf(yield* insertStarts(ctx, round.starts))
      const found = round.starts.filter((start) => !created.has(writeId(start.write)))
      if (found.length > 0) existing = yield* selectRows(found.map(({ write }) => write.key))
      const createdEvents = eventRecords(
        round.starts.flatMap((start) =>
          start.fused !== undefined && created.has(writeId(start.write)) ? [start.fused] : []
        )
      )
      if (createdEvents.length > 0) yield* insertEvents(ctx, createdEvents, sql.literal(""))
    }
    let appended = none
    const appends = round.appends
    if (appends.length > 0) {
      appended = idsOf(yield* updateAppends(ctx, appends))
      const records = eventRecords(appends.filter(({ write }) => appended.has(writeId(write))))
      if (records.length > 0) yield* insertEvents(ctx, records, sql.literal(""))
    }
    const suspended = round.suspends.length > 0 ? idsOf(yield* updateSuspends(ctx, round.suspends)) : none
    return { created, existing, appended, suspended }
  })

/** The execution columns after the key as NULLs, for the rows of a union with the full rows of `o`. */
const rowColumnsAsNull = ", " + executionColumns.split(", ").slice(2).map((c) => `NULL AS ${c}`).join(", ")

/**
 * PostgreSQL: the whole round is ONE statement (data-modifying CTEs), so a batch of one round is one
 * round trip and atomic without an explicit transaction. All CTEs see the snapshot from before the
 * statement: `o` reads the rows the starts find (for `Exists`), a fused append takes effect only with the
 * row its start inserts (its events join on `s`; a start that found its execution fences it), and events
 * are inserted only for the appends that took effect (joins on `s` and `a`).
 */
const applyPg = (ctx: SqlContext, round: Round): Effect.Effect<Applied, SqlError> => {
  const { E, source, sql, xcols } = ctx
  // (the key alone when no start reads rows: a narrower statement plans faster)
  const nulls = sql.literal(round.starts.length > 0 ? rowColumnsAsNull : "")
  const parts: Array<Statement.Fragment> = []
  const selects: Array<Statement.Fragment> = []
  const fused = round.starts.flatMap((start) => start.fused === undefined ? [] : [start.fused])
  const appends = round.appends
  if (round.starts.length > 0) {
    parts.push(sql`o AS (SELECT ${xcols} FROM ${E} AS x JOIN ${
      source(keySource, round.starts.map(({ write }) => ({ w: write.key.workflow, e: write.key.executionId })))
    } ON x.workflow = v.w AND x.execution_id = v.e)`)
    // (o's claim_until is already in the caller's clock)
    selects.push(sql`SELECT 'o' AS k, ${sql.literal(executionColumns)} FROM o`)
    parts.push(sql`s AS (${insertStarts(ctx, round.starts)})`)
    selects.push(sql`SELECT 's' AS k, workflow, execution_id${nulls} FROM s`)
    const records = eventRecords(fused)
    if (records.length > 0) {
      parts.push(
        sql`sev AS (${
          insertEvents(ctx, records, sql.literal(" JOIN s ON s.workflow = v.w AND s.execution_id = v.e"))
        })`
      )
    }
  }
  if (appends.length > 0) {
    parts.push(sql`a AS (${updateAppends(ctx, appends)})`)
    selects.push(sql`SELECT 'a' AS k, workflow, execution_id${nulls} FROM a`)
    const records = eventRecords(appends)
    if (records.length > 0) {
      parts.push(
        sql`ev AS (${
          insertEvents(ctx, records, sql.literal(" JOIN a ON a.workflow = v.w AND a.execution_id = v.e"))
        })`
      )
    }
  }
  if (round.suspends.length > 0) {
    parts.push(sql`p AS (${updateSuspends(ctx, round.suspends)})`)
    selects.push(sql`SELECT 'p' AS k, workflow, execution_id${nulls} FROM p`)
  }
  return Effect.map(
    sql<Row>`WITH ${sql.csv(parts)} ${sql.join(" UNION ALL ", false)(selects)}`,
    (rows) => {
      const created = new Set<string>()
      const existing = new Map<string, ExecutionRow>()
      const appended = new Set<string>()
      const suspended = new Set<string>()
      for (const row of rows) {
        const id = rowKeyId(row)
        if (row.k === "o") existing.set(id, decodeExecution(row))
        else if (row.k === "s") created.add(id)
        else if (row.k === "a") appended.add(id)
        else suspended.add(id)
      }
      return { created, existing, appended, suspended }
    }
  )
}

export const applyRound = (ctx: SqlContext, round: Round): Effect.Effect<Applied, SqlError> =>
  round.starts.length === 0 && round.appends.length === 0 && round.suspends.length === 0
    ? Effect.succeed({ created: none, existing: noRows, appended: none, suspended: none })
    : ctx.dialect === "pg"
    ? applyPg(ctx, round)
    : applySqlite(ctx, round)

