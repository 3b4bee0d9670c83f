/**
 * Listing and retention.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { ListOptions } from "../journal.js"
import type { SqlContext } from "./context.js"
import type { Row } from "./rows.js"
import { decodeExecution, keySource, str } from "./rows.js"

/** Lists executions, paged by keyset. */
export const list = ({ cols, E, inWorkflows, limitOf, read, sql }: SqlContext) =>
  (options: ListOptions) =>
    options.workflows.length === 0 || options.limit <= 0 ? Effect.succeed([]) : read(
      "list",
      Effect.map(
        sql<Row>`SELECT ${cols} FROM ${E}
WHERE ${inWorkflows(options.workflows)}${
          options.status === undefined ? sql.literal("") : sql` AND status = ${options.status}`
        }${
          options.after === undefined
            ? sql.literal("")
            : sql` AND (workflow, execution_id) > (${options.after.workflow}, ${options.after.executionId})`
        }
ORDER BY workflow, execution_id
LIMIT ${limitOf(options.limit)}`,
        (rows) => rows.map(decodeExecution)
      )
    )

const deleteChunk = 500
/** Deletes terminal executions completed before `before`, in chunks. */
export const deleteCompleted = ({ E, limitOf, S, source, sql, terminal, transaction, V }: SqlContext) =>
  (before: number) =>
    Effect.gen(function*() {
      let total = 0
      while (true) {
        const deleted = yield* transaction(
          "deleteCompleted",
          Effect.gen(function*() {
            const keys = yield* sql<Row>`DELETE FROM ${E} WHERE (workflow, execution_id) IN (
    SELECT workflow, execution_id FROM ${E}
    WHERE completed_at IS NOT NULL AND completed_at < ${before} AND status IN ${terminal}
    LIMIT ${limitOf(deleteChunk)})
RETURNING workflow, execution_id`
            if (keys.length > 0) {
              const json = keys.map((r) => ({ w: str(r.workflow), e: str(r.execution_id) }))
              yield* sql`DELETE FROM ${V} WHERE (workflow, execution_id) IN (SELECT v.w, v.e FROM ${
                source(keySource, json)
              })`
              yield* sql`DELETE FROM ${S} WHERE (workflow, execution_id) IN (SELECT v.w, v.e FROM ${
                source(keySource, json)
              })`
            }
            return keys.length
          })
        )
        total += deleted
        if (deleted < deleteChunk) return total
      }
    })
