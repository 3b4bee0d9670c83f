/**
 * The inbox: signals, cancellation requests and resumes.
 *
 * @internal
 */
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import type { ExecutionKey } from "../journal.js"
import type { SqlContext } from "./context.js"
import type { Row } from "./rows.js"
import { isTerminal } from "../journal.js"
import { announce } from "./engines.js"
import { decodeExecution, str } from "./rows.js"

/**
 * Puts a signal in the inbox (first wins), bumps the inbox version and announces the change, in the
 * caller's transaction. Returns the stored value and the row after the change (undefined for an unknown
 * execution).
 *
 * @internal
 */
export const storeSignal = (ctx: SqlContext, key: ExecutionKey, name: string, value: string, now: number) =>
  Effect.gen(function*() {
    const { cols, E, forUpdate, S, sql } = ctx
    // Lock the execution first (PostgreSQL), so concurrent signals bump the inbox one after the other.
    const current = yield* sql<Row>`SELECT ${cols} FROM ${E}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}${forUpdate}`
    if (current.length === 0) return undefined
    const row = decodeExecution(current[0]!)
    const inserted = yield* sql<Row>`INSERT INTO ${S} (workflow, execution_id, name, value, inbox_version,
    created_at)
VALUES (${key.workflow}, ${key.executionId}, ${name}, ${value}, ${row.inboxVersion + 1}, ${now})
ON CONFLICT DO NOTHING
RETURNING name`
    if (inserted.length === 0) {
      const stored = yield* sql<Row>`SELECT value FROM ${S}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND name = ${name}`
      return { stored: str(stored[0]?.value), row }
    }
    const rows = yield* sql<Row>`UPDATE ${E} SET inbox_version = inbox_version + 1, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}
RETURNING ${cols}`
    const changed = decodeExecution(rows[0]!)
    if (!isTerminal(changed.status)) yield* announce(ctx, key)
    return { stored: value, row: changed }
  })

/** Puts a signal in the inbox (first wins), bumps the inbox version and announces the change. */
export const signal = (ctx: SqlContext) => (key: ExecutionKey, name: string, value: string, now: number) =>
  ctx.transaction("signal", storeSignal(ctx, key, name, value, now))

const updateOrRead = (
  ctx: SqlContext,
  name: string,
  key: ExecutionKey,
  update: Statement.Statement<Row>
) =>
  ctx.operation(
    name,
    Effect.gen(function*() {
      const rows = yield* update
      if (rows.length === 0) return yield* ctx.selectRow(key)
      yield* announce(ctx, key)
      return decodeExecution(rows[0]!)
    })
  )

/** Requests cancellation of a non-terminal execution. */
export const requestCancel = (ctx: SqlContext) =>
  (key: ExecutionKey, now: number) =>
    updateOrRead(
      ctx,
      "requestCancel",
      key,
      ctx.sql<Row>`UPDATE ${ctx.E} SET cancel_requested = 1, inbox_version = inbox_version + 1, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND status NOT IN ${ctx.terminal}
RETURNING ${ctx.cols}`
    )

/** Marks a `yield`-suspended execution runnable. */
export const resume = (ctx: SqlContext) =>
  (key: ExecutionKey, now: number) =>
    updateOrRead(
      ctx,
      "resume",
      key,
      ctx.sql<Row>`UPDATE ${ctx.E} SET status = 'running', suspended_on = NULL, wake_at = NULL,
    inbox_version = inbox_version + 1, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND status = 'suspended'
RETURNING ${ctx.cols}`
    )
