/**
 * What the demo reads from the database, as a client would: the journal's executions table (status and
 * claim owner of each execution) and the side-effect table the activities write (examples/demo/payment.ts).
 * Nothing here writes.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { activityNames, effectsTable, journalPrefix } from "./payment.js"

const executions = `${journalPrefix}_executions`
const lastActivity = activityNames[activityNames.length - 1]

/** Counts of executions by status, and of running ones by the pod that holds their claim. */
export interface Sample {
  readonly at: number
  readonly byStatus: ReadonlyMap<string, number>
  readonly runningByPod: ReadonlyMap<string, number>
}

/** One look at the executions table. */
export const sample: Effect.Effect<Sample, unknown, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe<{ status: string; claim_owner: string | null; n: unknown }>(
    `SELECT status, claim_owner, COUNT(*) AS n FROM ${executions} GROUP BY status, claim_owner`
  )
  const byStatus = new Map<string, number>()
  const runningByPod = new Map<string, number>()
  for (const row of rows) {
    const n = Number(row.n)
    byStatus.set(row.status, (byStatus.get(row.status) ?? 0) + n)
    if (row.status === "running" && row.claim_owner !== null) {
      runningByPod.set(row.claim_owner, (runningByPod.get(row.claim_owner) ?? 0) + n)
    }
  }
  return { at: Date.now(), byStatus, runningByPod }
})

/** The unfinished executions claimed by `pod` (read right after it was killed: what it left behind). */
export const unfinishedOf = (pod: string): Effect.Effect<ReadonlyArray<string>, unknown, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ execution_id: string }>(
        `SELECT execution_id FROM ${executions} WHERE status IN ('running', 'suspended') AND claim_owner = ?`,
        [pod]
      ),
      (rows) => rows.map((row) => row.execution_id)
    ))

/** Where the executions `ids` are now: completed ones, and unfinished ones claimed by another pod than `pod`. */
export const whereAre = (
  ids: ReadonlyArray<string>,
  pod: string
): Effect.Effect<{ readonly completed: number; readonly resumed: number }, unknown, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      ids.length === 0
        ? Effect.succeed([])
        : sql.unsafe<{ status: string; claim_owner: string | null }>(
          `SELECT status, claim_owner FROM ${executions} WHERE execution_id IN (${ids.map(() => "?").join(", ")})`,
          ids
        ),
      (rows) => ({
        completed: rows.filter((row) => row.status === "completed").length,
        resumed: rows.filter((row) =>
          row.status === "completed" || (row.claim_owner !== null && row.claim_owner !== pod)
        ).length
      })
    ))

/**
 * Completed workflows by the pod that completed them: the pod of the last run of the workflow's last
 * activity (a run cut off by the kill is followed by the one that counted).
 */
export const completedByPod: Effect.Effect<ReadonlyMap<string, number>, unknown, SqlClient.SqlClient> = Effect
  .flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ pod: string; n: unknown }>(
        `SELECT e.pod AS pod, COUNT(*) AS n FROM ${effectsTable} e
JOIN ${executions} x ON x.execution_id = e.order_id AND x.status = 'completed'
WHERE e.activity = ? AND e.seq = (SELECT MAX(f.seq) FROM ${effectsTable} f WHERE f.order_id = e.order_id AND f.activity = e.activity)
GROUP BY e.pod`,
        [lastActivity]
      ),
      (rows) => new Map(rows.map((row) => [row.pod, Number(row.n)]))
    ))

/** A pod that stopped serving all its shards at once (its lease not renewed in time), at `at` (ms, its clock). */
export interface Drop {
  readonly pod: string
  readonly at: number
  readonly reason: string
}

/** What the run left in the database, checked. */
export interface Verdict {
  readonly workflows: number
  readonly completed: number
  /** Completed with the seed's result (tracking code 1). */
  readonly rightResult: number
  readonly activities: number
  readonly bodyRuns: number
  /** Activities whose body ran twice, the first run on the killed pod before the kill, same idempotency key. */
  readonly cutOffByKill: number
  /**
   * Activities whose body ran twice, the first run on a pod before it dropped its shards (lease not renewed
   * in time), the second after, same idempotency key.
   */
  readonly cutOffByDrop: number
  /** Anything else: an activity that never ran, ran twice otherwise, or more than twice. */
  readonly problems: ReadonlyArray<string>
}

/** Reads the outcome of every workflow and every recorded activity run, and checks them. */
export const verdict = (
  orderIds: ReadonlyArray<string>,
  killed: { readonly pod: string; readonly at: number } | undefined,
  drops: ReadonlyArray<Drop>
): Effect.Effect<Verdict, unknown, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outcomes = yield* sql.unsafe<{ execution_id: string; status: string; result: string | null }>(
      `SELECT execution_id, status, result FROM ${executions}`
    )
    const runs = yield* sql.unsafe<{ order_id: string; activity: string; pod: string; idempotency_key: string; at: unknown }>(
      `SELECT order_id, activity, pod, idempotency_key, at FROM ${effectsTable} ORDER BY seq`
    )
    const problems: Array<string> = []
    const byStep = new Map<string, Array<{ pod: string; key: string; at: number }>>()
    for (const run of runs) {
      const step = `${run.order_id} ${run.activity}`
      const list = byStep.get(step) ?? []
      list.push({ pod: run.pod, key: run.idempotency_key, at: Number(run.at) })
      byStep.set(step, list)
    }
    let cutOffByKill = 0
    let cutOffByDrop = 0
    for (const id of orderIds) {
      for (const activity of activityNames) {
        const list = byStep.get(`${id} ${activity}`) ?? []
        if (list.length === 1) continue
        const [first, second] = list
        const twice = list.length === 2 && first!.key === second!.key
        if (
          twice && killed !== undefined && first!.pod === killed.pod && first!.at <= killed.at &&
          second!.pod !== killed.pod
        ) {
          cutOffByKill++
        } else if (
          twice && drops.some((drop) => drop.pod === first!.pod && first!.at <= drop.at && drop.at <= second!.at)
        ) {
          cutOffByDrop++
        } else {
          problems.push(`${id} ${activity}: ${list.length} runs (${list.map((run) => run.pod).join(", ")})`)
        }
      }
    }
    const completed = outcomes.filter((row) => row.status === "completed")
    const rightResult = completed.filter((row) => row.result !== null && isTrackingCodeOne(row.result)).length
    return {
      workflows: outcomes.length,
      completed: completed.length,
      rightResult,
      activities: orderIds.length * activityNames.length,
      bodyRuns: runs.length,
      cutOffByKill,
      cutOffByDrop,
      problems
    }
  })

/** The journal stores an outcome as the encoded exit: `{ "_tag": "Success", "value": 1 }`. */
const isTrackingCodeOne = (result: string): boolean => {
  try {
    const exit = JSON.parse(result) as { _tag?: unknown; value?: unknown }
    return exit._tag === "Success" && exit.value === 1
  } catch {
    return false
  }
}

/** The first unfinished executions, with their shard and that shard's fence (for an error message). */
export const stragglers: Effect.Effect<string, unknown, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.unsafe<Record<string, unknown>>(
    `SELECT x.execution_id, x.status, x.claim_owner, x.claim_epoch, x.suspended_on, i.shard_id, f.epoch AS fence_epoch,
  f.pod AS fence_pod FROM ${executions} x
LEFT JOIN ${journalPrefix}_cluster_index i ON i.workflow = x.workflow AND i.execution_id = x.execution_id
LEFT JOIN ${journalPrefix}_cluster_fences f ON f.shard_id = i.shard_id
WHERE x.status <> 'completed' LIMIT 10`
  )
  return rows.map((row) => JSON.stringify(row)).join("\n")
})

/** When the first execution of one of `shards` completed after `after` (journal time, ms), if one did. */
export const firstCompletedOn = (
  shards: ReadonlyArray<number>,
  after: number
): Effect.Effect<number | undefined, unknown, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      shards.length === 0 ? Effect.succeed([]) : sql.unsafe<{ at: unknown }>(
        `SELECT MIN(x.completed_at) AS at FROM ${executions} x
JOIN ${journalPrefix}_cluster_index i ON i.workflow = x.workflow AND i.execution_id = x.execution_id
WHERE x.status = 'completed' AND x.completed_at > ? AND i.shard_id IN (${shards.map(() => "?").join(", ")})`,
        [after, ...shards]
      ),
      (rows) => rows[0]?.at === null || rows[0]?.at === undefined ? undefined : Number(rows[0].at)
    ))
