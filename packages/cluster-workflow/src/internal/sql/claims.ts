/**
 * Claims and the reads that find work: claiming, renewing, due timers and executions nobody runs.
 *
 * @internal
 */
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import type { ClaimResult, ExecutionKey, ExecutionRow } from "../journal.js"
import type { JournalError } from "../journal.js"
import { isTerminal } from "../journal.js"
import { lookAgainWhileLocked, rowLocked } from "../rowLocked.js"
import type { SqlContext } from "./context.js"
import type { Row } from "./rows.js"
import { decodeExecution, keyId, numOrNull, renewSource, rowKeyId, str } from "./rows.js"

/**
 * Claims an unfinished execution (see `Journal.claim`). On PostgreSQL the claim does not wait for a row
 * locked by another transaction (`FOR UPDATE SKIP LOCKED`): it tries again for a moment (`lookAgainWhileLocked`: a
 * short update by another engine, such as a renewal, ends in milliseconds) and then fails with a retryable
 * `JournalError` ("not claimed now, try later"), so one row locked for long (a transaction left open) does
 * not hold up the other executions (the timer backs off and tries that one again later).
 */
export const claim = ({ cols, dialect, E, operation, selectRow, sql, terminal, time }: SqlContext) =>
  (key: ExecutionKey, owner: string, now: number, claimUntil: number) => {
    const attempt = operation(
      "claim",
      Effect.gen(function*() {
        const unlocked = dialect === "pg"
          ? sql`AND (workflow, execution_id) IN (SELECT workflow, execution_id FROM ${E}
  WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} FOR UPDATE SKIP LOCKED)`
          : sql``
        // claim_until in the database's time, and expiry decided against the database's clock (time.ts)
        const claimable = sql`workflow = ${key.workflow} AND execution_id = ${key.executionId}
  AND status NOT IN ${terminal}
  AND (claim_owner IS NULL OR claim_owner = ${owner} OR (claim_until IS NOT NULL AND claim_until < ${
          time.nowAt(now)
        }))`
        const rows = yield* sql<Row>`UPDATE ${E} SET status = 'running', suspended_on = NULL, wake_at = NULL,
  claim_owner = ${owner}, claim_epoch = claim_epoch + 1, claim_until = ${time.at(claimUntil, now)},
  updated_at = ${now}
WHERE ${claimable} ${unlocked}
RETURNING ${cols}`
        if (rows.length > 0) return { _tag: "Claimed", row: decodeExecution(rows[0]!) } satisfies ClaimResult
        const row = yield* selectRow(key)
        if (dialect !== "pg" || row === undefined || isTerminal(row.status)) {
          return { _tag: "Unavailable", row } satisfies ClaimResult
        }
        // Not claimed: was the row locked by another transaction? It was when it is claimable now (the
        // update skipped it; its lock may already be gone, or be one a share probe does not see, such as
        // another claim's own probe), or when it is locked still (an update not committed).
        const locked = (yield* sql<Row>`SELECT 1 AS free FROM ${E} WHERE ${claimable}`).length > 0 ||
          (yield* sql<Row>`SELECT 1 AS free FROM ${E}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} FOR SHARE SKIP LOCKED`).length === 0
        return locked ? undefined : { _tag: "Unavailable", row } satisfies ClaimResult
      })
    )
    return Effect.flatMap(lookAgainWhileLocked(attempt), (result) =>
      result !== undefined ? Effect.succeed(result) : Effect.fail(rowLocked()))
  }

/** Extends the claims an owner still holds at the given epochs. */
export const renew = ({ cols, E, operation, source, sql, terminal, time }: SqlContext) =>
  (
    owner: string,
    claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>,
    claimUntil: number
  ): Effect.Effect<ReadonlyArray<ExecutionRow | undefined>, JournalError> =>
    claims.length === 0 ? Effect.succeed([]) : operation(
      "renew",
      Effect.map(
        sql<Row>`UPDATE ${E} AS x SET claim_until = ${time.at(claimUntil, time.local)}
FROM ${source(renewSource, claims.map((c) => ({ w: c.key.workflow, e: c.key.executionId, epoch: c.epoch })))}
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = ${owner} AND x.claim_epoch = v.epoch
    AND x.status NOT IN ${terminal}
RETURNING ${cols}`,
        (rows) => {
          const byId = new Map(rows.map((r) => [rowKeyId(r), decodeExecution(r)]))
          return claims.map(({ epoch, key }) => {
            const row = byId.get(keyId(key.workflow, key.executionId))
            return row !== undefined && row.claimEpoch === epoch ? row : undefined
          })
        }
      )
    )

/** The earliest timer deadline among suspended executions. */
export const nextWakeAt = ({ E, inWorkflows, read, sql }: SqlContext) =>
  (workflows: ReadonlyArray<string>) =>
    workflows.length === 0 ? Effect.succeed(undefined) : read(
      "nextWakeAt",
      Effect.map(
        sql<Row>`SELECT MIN(wake_at) AS wake_at FROM ${E}
WHERE status = 'suspended' AND wake_at IS NOT NULL AND ${inWorkflows(workflows)}`,
        (rows) => {
          const wakeAt = numOrNull(rows[0]?.wake_at)
          return wakeAt === null ? undefined : wakeAt
        }
      )
    )

const toKeys = (rows: ReadonlyArray<Row>): Array<ExecutionKey> =>
  rows.map((r) => ({ workflow: str(r.workflow), executionId: str(r.execution_id) }))

/** Suspended executions due by `now`, in deadline order. */
export const dueTimers = ({ E, inWorkflows, limitOf, read, sql }: SqlContext) =>
  (workflows: ReadonlyArray<string>, now: number, limit: number) =>
    workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
      "dueTimers",
      Effect.map(
        sql<Row>`SELECT workflow, execution_id FROM ${E}
WHERE status = 'suspended' AND wake_at IS NOT NULL AND wake_at <= ${now} AND ${inWorkflows(workflows)}
ORDER BY wake_at, workflow, execution_id
LIMIT ${limitOf(limit)}`,
        toKeys
      )
    )

/** Executions that should run but nobody runs. */
export const resumable = ({ E, inWorkflows, limitOf, read, sql, time }: SqlContext) =>
  (workflows: ReadonlyArray<string>, owner: string, now: number, limit: number) =>
    workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
      "resumable",
      Effect.map(
        sql<Row>`SELECT workflow, execution_id FROM ${E}
WHERE status = 'running' AND ${inWorkflows(workflows)}
    AND (claim_owner IS NULL OR claim_owner = ${owner} OR (claim_until IS NOT NULL AND claim_until < ${
          time.nowAt(now)
        }))
ORDER BY created_at, workflow, execution_id
LIMIT ${limitOf(limit)}`,
        toKeys
      )
    )

/**
 * Suspended executions whose inbox changed after they suspended, and parents suspended on a child that
 * is terminal while its result is not in their inbox (see `Journal.staleSuspensions`).
 *
 * A child's parent link is the JSON text `{"workflow":..,"executionId":..,"signal":..}` (in that order,
 * as the engine writes it): it is matched as text, so a corrupt link is merely not matched.
 *
 * @internal
 */
export const staleSuspensions = ({ dialect, E, inWorkflows, limitOf, read, S, sql, terminal }: SqlContext) =>
  (workflows: ReadonlyArray<string>, limit: number) => {
    const quote = (column: Statement.Fragment) =>
      dialect === "pg" ? sql`to_json(${column}::text)::text` : sql`json_quote(${column})`
    const link = sql`'{"workflow":' || ${quote(sql`p.workflow`)} || ',"executionId":' ||
      ${quote(sql`p.execution_id`)} || ',"signal":'`
    return workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
      "staleSuspensions",
      Effect.map(
        sql<Row>`SELECT p.workflow, p.execution_id FROM ${E} p
WHERE p.status = 'suspended' AND ${inWorkflows(workflows)}
  AND (p.cancel_requested = 1 OR (p.suspended_inbox IS NOT NULL AND p.inbox_version > p.suspended_inbox)
    OR (p.suspended_on LIKE '%child%' AND EXISTS (
      SELECT 1 FROM ${E} c
      WHERE c.parent IS NOT NULL AND c.status IN ${terminal} AND substr(c.parent, 1, length(${link})) = ${link}
        AND NOT EXISTS (
          SELECT 1 FROM ${S} s WHERE s.workflow = p.workflow AND s.execution_id = p.execution_id
            AND c.parent = ${link} || ${quote(sql`s.name`)} || '}'))))
ORDER BY p.workflow, p.execution_id
LIMIT ${limitOf(limit)}`,
        toKeys
      )
    )
  }
