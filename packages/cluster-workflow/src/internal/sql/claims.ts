/**
 * Claims and the reads that find work: claiming, renewing, due timers and executions nobody runs.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { ClaimResult, ExecutionKey, ExecutionRow, JournalError } from "../journal.js"
import type { SqlContext } from "./context.js"
import type { Row } from "./rows.js"
import { decodeExecution, keyId, numOrNull, renewSource, rowKeyId, str } from "./rows.js"

/** Claims an unfinished execution (see `Journal.claim`). */
export const claim = ({ cols, E, operation, selectRow, sql, terminal }: SqlContext) =>
  (key: ExecutionKey, owner: string, now: number, claimUntil: number) =>
    operation(
      "claim",
      Effect.gen(function*() {
        const rows = yield* sql<Row>`UPDATE ${E} SET status = 'running', suspended_on = NULL, wake_at = NULL,
    claim_owner = ${owner}, claim_epoch = claim_epoch + 1, claim_until = ${claimUntil}, updated_at = ${now}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId} AND status NOT IN ${terminal}
    AND (claim_owner IS NULL OR claim_owner = ${owner} OR (claim_until IS NOT NULL AND claim_until < ${now}))
RETURNING ${cols}`
        if (rows.length > 0) return { _tag: "Claimed", row: decodeExecution(rows[0]!) } satisfies ClaimResult
        const row = yield* selectRow(key)
        return { _tag: "Unavailable", row } satisfies ClaimResult
      })
    )

/** Extends the claims an owner still holds at the given epochs. */
export const renew = ({ cols, E, operation, source, sql, terminal }: SqlContext) =>
  (
    owner: string,
    claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>,
    claimUntil: number
  ): Effect.Effect<ReadonlyArray<ExecutionRow | undefined>, JournalError> =>
    claims.length === 0 ? Effect.succeed([]) : operation(
      "renew",
      Effect.map(
        sql<Row>`UPDATE ${E} AS x SET claim_until = ${claimUntil}
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
export const resumable = ({ E, inWorkflows, limitOf, read, sql }: SqlContext) =>
  (workflows: ReadonlyArray<string>, owner: string, now: number, limit: number) =>
    workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
      "resumable",
      Effect.map(
        sql<Row>`SELECT workflow, execution_id FROM ${E}
WHERE status = 'running' AND ${inWorkflows(workflows)}
    AND (claim_owner IS NULL OR claim_owner = ${owner} OR (claim_until IS NOT NULL AND claim_until < ${now}))
ORDER BY created_at, workflow, execution_id
LIMIT ${limitOf(limit)}`,
        toKeys
      )
    )

/**
 * Suspended executions whose inbox changed after they suspended (see `Journal.staleSuspensions`).
 *
 * @internal
 */
export const staleSuspensions = ({ E, inWorkflows, limitOf, read, sql }: SqlContext) =>
  (workflows: ReadonlyArray<string>, limit: number) =>
    workflows.length === 0 || limit <= 0 ? Effect.succeed([]) : read(
      "staleSuspensions",
      Effect.map(
        sql<Row>`SELECT workflow, execution_id FROM ${E}
WHERE status = 'suspended' AND ${inWorkflows(workflows)}
  AND (cancel_requested = 1 OR (suspended_inbox IS NOT NULL AND inbox_version > suspended_inbox))
ORDER BY workflow, execution_id
LIMIT ${limitOf(limit)}`,
        toKeys
      )
    )
