/**
 * The journal as a pod of the cluster sees it: every write of an execution carries the epoch of the shard
 * it runs under, checked against the shard's fence row in the same SQL transaction; claims are taken only
 * by the pod serving the execution's shard; timers are only those of served shards. See
 * docs/workflows-on-cluster.md.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ClaimResult, ExecutionKey, Journal, JournalWrite, WriteResult } from "../journal.js"
import { isTerminal, JournalError } from "../journal.js"
import { keyString } from "../results.js"
import { inTransaction, withRetries } from "../sql/retry.js"
import { rootEntityId } from "./protocol.js"
import { lookAgainWhileLocked, rowLocked } from "../rowLocked.js"

/** Where an execution lives: its entity (a child lives in its root's) and that entity's shard. */
export interface Placement {
  readonly entityId: string
  readonly shard: number
}

/** An execution this pod runs: its placement and the shard epoch it runs under. */
export interface Run extends Placement {
  readonly epoch: number
}

/** A row of the shard index. */
type IndexRow = {
  readonly workflow: string
  readonly execution_id: string
  readonly entity_id: string
  readonly shard_id: number
}

/** What the journal needs to know of the pod's shards. */
export interface ShardView {
  /** Shards the pod may serve now, with their epochs. */
  readonly served: Effect.Effect<ReadonlyMap<number, number>>
  /** Shards the pod holds, served or not (a lease that ran out by the pod's clock is not served). */
  readonly held: Effect.Effect<ReadonlySet<number>>
  /**
   * Shards the pod has stopped serving in a hand-off whose stop still runs, with the epoch released
   * (`Sharding.releasingShardEpochs`): their fences stay the pod's until it confirms the release.
   */
  readonly releasing: Effect.Effect<ReadonlyMap<number, number>>
  readonly shardOf: (entityId: string) => number
  /** The pod's name, recorded with the fences it raises. */
  readonly pod: string
}

/** An unfinished execution of a shard, found through the shard index. */
export interface ShardExecution extends ExecutionKey {
  readonly status: "running" | "suspended"
  readonly wakeAt: number | null
  readonly suspendedOn: string | null
}

const retries = 10
/** See `FencedJournal.boundIdle`. */
const idleInTransactionMillis = 2_000
const toNumber = (value: unknown): number => typeof value === "number" ? value : Number(value)

const fenced: WriteResult = { _tag: "Fenced" }

/** Whether a write records its execution's end (a terminal status). */
const finishes = (write: JournalWrite): boolean =>
  write._tag === "Append" && write.update?.status !== undefined && isTerminal(write.update.status)

/** Creates the fence and shard index tables, if absent. */
export const createTables = (sql: SqlClient.SqlClient, prefix: string): Effect.Effect<void, JournalError> =>
  withRetries(
    retries,
    "cluster tables",
    Effect.gen(function*() {
      yield* sql`CREATE TABLE IF NOT EXISTS ${sql(`${prefix}_cluster_fences`)} (
  shard_id INTEGER PRIMARY KEY, epoch BIGINT NOT NULL, pod TEXT NOT NULL)`
      yield* sql`CREATE TABLE IF NOT EXISTS ${sql(`${prefix}_cluster_index`)} (
  workflow TEXT NOT NULL, execution_id TEXT NOT NULL, entity_id TEXT NOT NULL, shard_id INTEGER NOT NULL,
  PRIMARY KEY (workflow, execution_id))`
      yield* sql`CREATE INDEX IF NOT EXISTS ${sql(`${prefix}_cluster_index_shard`)} ON ${
        sql(`${prefix}_cluster_index`)
      } (shard_id)`
    })
  ).pipe(
    // Pods starting together race to create the tables (PostgreSQL reports the loser's CREATE ... IF NOT
    // EXISTS as a duplicate type): the next attempt finds them.
    Effect.retry({ times: 3 })
  )

/** The cluster's view of a SQL journal (see the module comment). */
export class FencedJournal {
  /** Executions this pod runs, by `keyString`. */
  readonly runs = new Map<string, Run>()
  /** `shard:epoch` pairs whose fence this pod has raised (so writes need not raise it again). */
  private readonly raised = new Set<string>()
  readonly journal: Journal
  private readonly sql: SqlClient.SqlClient
  private readonly F: Statement.Identifier
  private readonly I: Statement.Identifier
  private readonly E: Statement.Identifier

  constructor(
    readonly inner: Journal,
    client: SqlClient.SqlClient,
    prefix: string,
    executionsTable: string,
    readonly view: ShardView
  ) {
    this.sql = client.withoutTransforms()
    this.F = this.sql(`${prefix}_cluster_fences`)
    this.I = this.sql(`${prefix}_cluster_index`)
    this.E = this.sql(executionsTable)
    this.journal = {
      ...inner,
      commit: (writes) => this.commit(writes),
      claim: (key, owner, now, claimUntil) => this.claim(key, owner, now, claimUntil),
      nextWakeAt: (workflows) => this.nextWakeAt(workflows),
      dueTimers: (workflows, now, limit) => this.dueTimers(workflows, now, limit),
      mayAct: (key) => this.mayAct(key),
      holdBack: this.holdBack
    }
    this.boundIdle = this.sql.onDialectOrElse({
      pg: () =>
        Effect.asVoid(
          this.sql.unsafe(`SET LOCAL idle_in_transaction_session_timeout = ${idleInTransactionMillis}`)
        ),
      orElse: () => Effect.void
    })
  }

  /**
   * PostgreSQL: a fenced transaction holds its shards' fence rows locked until it ends. Were its pod to
   * stop inside it (a pause, a freeze), no new owner could raise those fences, nor take the shards over,
   * for as long as the pause lasts: the server ends such a transaction (and its session) once the pod has
   * been silent in it for `idleInTransactionMillis`. The pod sees its write fail and retries it, under the
   * fence as it stands then.
   */
  private readonly boundIdle: Effect.Effect<void, SqlError>

  /**
   * A transaction of the fenced journal. `locksFirst`: its first statement is `lockFences`, which bounds
   * the idle time itself (in the same round trip); otherwise `boundIdle` runs first.
   */
  private transaction<A>(
    operation: string,
    body: Effect.Effect<A, SqlError | JournalError>,
    locksFirst = false
  ) {
    return withRetries(
      retries,
      operation,
      inTransaction(this.sql.withTransaction, locksFirst ? body : Effect.zipRight(this.boundIdle, body))
    )
  }

  /** Whether this pod still serves the shard of an execution it runs, at the epoch it runs under. */
  mayAct(key: ExecutionKey): Effect.Effect<boolean> {
    return Effect.map(this.view.served, (served) => {
      const run = this.runs.get(keyString(key))
      return run !== undefined && served.get(run.shard) === run.epoch
    })
  }

  /**
   * Where an execution lives: from the shard index, else (not started yet) its own root entity. Only a
   * child lives elsewhere (in its root's entity), and a child's id always holds a `/` (`<parent id>/...`,
   * its parts URI-encoded): an id without one is a root's, placed without reading the index.
   */
  placementOf(key: ExecutionKey): Effect.Effect<Placement, JournalError> {
    const run = this.runs.get(keyString(key))
    if (run !== undefined) return Effect.succeed(run)
    if (!key.executionId.includes("/")) {
      const entityId = rootEntityId(key.workflow, key.executionId)
      return Effect.succeed({ entityId, shard: this.view.shardOf(entityId) })
    }
    const { I, sql } = this
    return withRetries(
      retries,
      "placement",
      Effect.map(
        sql<{ entity_id: string; shard_id: unknown }>`SELECT entity_id, shard_id FROM ${I}
WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}`,
        (rows) => {
          const row = rows[0]
          if (row !== undefined) return { entityId: row.entity_id, shard: toNumber(row.shard_id) }
          const entityId = rootEntityId(key.workflow, key.executionId)
          return { entityId, shard: this.view.shardOf(entityId) }
        }
      )
    )
  }

  /**
   * Raises a shard's fence to `epoch` (never lowers it). Returns whether the fence now stands at `epoch`:
   * false means a newer owner has fenced this pod out of the shard.
   */
  raiseFence(shard: number, epoch: number): Effect.Effect<boolean, JournalError> {
    const id = `${shard}:${epoch}`
    if (this.raised.has(id)) return Effect.succeed(true)
    const { F, sql } = this
    return this.transaction(
      "raise fence",
      Effect.gen(this, function*() {
        yield* sql`INSERT INTO ${F} (shard_id, epoch, pod) VALUES (${shard}, ${epoch}, ${this.view.pod})
ON CONFLICT (shard_id) DO UPDATE SET epoch = excluded.epoch, pod = excluded.pod WHERE ${F}.epoch < excluded.epoch`
        const rows = yield* sql<{ epoch: unknown }>`SELECT epoch FROM ${F} WHERE shard_id = ${shard}`
        return rows.length > 0 && toNumber(rows[0]!.epoch) === epoch
      })
    ).pipe(
      // (remembered once committed: marked inside the transaction, a raise whose commit then failed was taken
      // as done, and every later write of the shard here was refused by a fence row that did not exist)
      Effect.tap((stands) => {
        if (stands) this.raised.add(id)
      })
    )
  }

  /** Forgets the fences raised for a shard (it left the pod). */
  forgetShard(shard: number) {
    for (const id of this.raised) if (id.startsWith(`${shard}:`)) this.raised.delete(id)
  }

  /**
   * Locks the fence rows of `shards` for the rest of the transaction and returns their epochs. A write
   * whose epoch is not its shard's fence does not commit; a pod raising a fence waits for the lock, so no
   * write under the old epoch commits after the raise.
   */
  private lockFences(shards: ReadonlyArray<number>, index: ReadonlyArray<IndexRow> = []) {
    const { F, I, sql } = this
    // PostgreSQL: the same statement bounds the transaction's idle time (see `boundIdle`), before any
    // lock is held, and records the starts in the shard index, with no round trip of their own. (An
    // index row says where an execution lives, which depends on its key alone: one whose start the fence
    // then refuses is harmless, the index is only read joined to the executions.)
    const locked = sql.onDialectOrElse({
      pg: () => {
        const indexed = index.length === 0 ? sql`` : sql`, indexed AS (INSERT INTO ${I} ${
          sql.insert(index)
        } ON CONFLICT (workflow, execution_id) DO NOTHING)`
        return sql<{ shard_id: unknown; epoch: unknown }>`WITH bound AS (SELECT set_config('idle_in_transaction_session_timeout', ${
          String(idleInTransactionMillis)
        }, true) AS idle)${indexed}
UPDATE ${F} SET epoch = ${F}.epoch FROM bound WHERE shard_id IN ${sql.in(shards)} AND bound.idle IS NOT NULL
RETURNING shard_id, ${F}.epoch AS epoch`
      },
      orElse: () =>
        Effect.zipRight(
          index.length === 0 ? Effect.void : sql`INSERT INTO ${I} ${
            sql.insert(index)
          } ON CONFLICT (workflow, execution_id) DO NOTHING`,
          sql<{ shard_id: unknown; epoch: unknown }>`UPDATE ${F} SET epoch = epoch WHERE shard_id IN ${sql.in(shards)}
RETURNING shard_id, epoch`
        )
    })
    return Effect.map(
      locked,
      (rows) => new Map(rows.map((row) => [toNumber(row.shard_id), toNumber(row.epoch)]))
    )
  }

  /**
   * The run a write belongs to, or undefined when this pod does not serve it at the run's epoch. A run of a
   * shard the pod hands off (no longer served, its stop still running: see `stopShards` in
   * ClusterWorkflowEngine.ts) still writes at the epoch released: its fence stays this pod's until the
   * release is confirmed, so what its drain finishes (an activity's result) commits, checked against the
   * fence row. (The pod marks the shard so in the same step as it stops serving it: a result committed at
   * any moment of the hand-off is the pod's.) A new execution (a Start) is written only on a served shard.
   */
  private runOf(
    write: JournalWrite,
    served: ReadonlyMap<number, number>,
    releasing: ReadonlyMap<number, number>,
    batch: Map<string, Run>
  ): Effect.Effect<Run | undefined, JournalError> {
    const id = keyString(write.key)
    if (write._tag !== "Start") {
      const run = this.runs.get(id) ?? batch.get(id)
      if (run === undefined) return Effect.succeed(undefined)
      const writable = served.get(run.shard) === run.epoch ||
        (!served.has(run.shard) && releasing.get(run.shard) === run.epoch)
      return Effect.succeed(writable ? run : undefined)
    }
    // A child starts in its parent's entity, so it runs where its parent does.
    let parent: ExecutionKey | undefined
    try {
      const link = write.parent === null ? null : JSON.parse(write.parent)
      if (link !== null) parent = { workflow: String(link.workflow), executionId: String(link.executionId) }
    } catch {
      parent = undefined
    }
    const placement = parent === undefined
      ? Effect.succeed({ entityId: rootEntityId(write.key.workflow, write.key.executionId) })
      : this.placementOf(parent)
    return Effect.map(placement, ({ entityId }) => {
      const shard = this.view.shardOf(entityId)
      const epoch = served.get(shard)
      if (epoch === undefined) return undefined
      const run = { entityId, shard, epoch }
      batch.set(id, run)
      return run
    })
  }

  /**
   * The writes the group committer holds back (`Journal.holdBack`): those of executions running here
   * whose shard is in a lapse (held by the pod but not served: its lease ran out by its own clock, a
   * renewal may follow at the same epoch). Refused, such a write would stop its execution here, and a
   * body whose result it records would run again. A shard dropped (no longer held) or served at another
   * epoch is not waited for: its writes are refused. (A Start runs under no shard yet: never held back.)
   */
  readonly holdBack: Effect.Effect<((write: JournalWrite) => boolean) | undefined> = Effect.suspend(() =>
    this.runs.size === 0 ? Effect.succeed(undefined) : Effect.flatMap(this.view.held, (held) =>
      Effect.map(this.view.served, (served) => {
        const lapsed = new Set<number>()
        for (const shard of held) if (!served.has(shard)) lapsed.add(shard)
        if (lapsed.size === 0) return undefined
        return (write: JournalWrite) => {
          const run = write._tag === "Start" ? undefined : this.runs.get(keyString(write.key))
          return run !== undefined && lapsed.has(run.shard)
        }
      }))
  )

  commit(writes: ReadonlyArray<JournalWrite>): Effect.Effect<ReadonlyArray<WriteResult>, JournalError> {
    return Effect.gen(this, function*() {
      // (read before the served shards: a shard released between the two reads is in one of them)
      const releasing = yield* this.view.releasing
      const served = yield* this.view.served
      const results: Array<WriteResult | undefined> = new Array(writes.length)
      const batch = new Map<string, Run>()
      const candidates: Array<{ readonly index: number; readonly write: JournalWrite; readonly run: Run }> = []
      for (let index = 0; index < writes.length; index++) {
        const write = writes[index]!
        const run = yield* this.runOf(write, served, releasing, batch)
        if (run === undefined) results[index] = fenced
        else candidates.push({ index, write, run })
      }
      if (candidates.length === 0) return results as Array<WriteResult>
      // (a shard being handed off is no longer served: its runs' epoch is the one the fence must stand at)
      const epochs = new Map(candidates.map(({ run }) => [run.shard, run.epoch]))
      const shards = Array.from(epochs.keys())
      for (const [shard, epoch] of epochs) yield* this.raiseFence(shard, epoch)
      const index: Array<IndexRow> = []
      for (const { run, write } of candidates) {
        if (write._tag !== "Start") continue
        index.push({
          workflow: write.key.workflow,
          execution_id: write.key.executionId,
          entity_id: run.entityId,
          shard_id: run.shard
        })
      }
      const committed = yield* this.transaction(
        "commit",
        Effect.gen(this, function*() {
          const fences = yield* this.lockFences(shards, index)
          const passing = candidates.filter(({ run }) => fences.get(run.shard) === run.epoch)
          const applied = passing.length === 0 ? [] : yield* this.inner.commit(passing.map(({ write }) => write))
          return { passing, applied }
        }),
        true
      )
      for (const candidate of candidates) results[candidate.index] = fenced
      committed.passing.forEach(({ index, run, write }, i) => {
        const result = committed.applied[i]!
        results[index] = result
        if (result._tag === "Created") this.runs.set(keyString(write.key), run)
        // A finished execution writes nothing more here: its run is dropped at once (the shard sweep
        // would read its row a second later only to drop it).
        else if (result._tag === "Ok" && finishes(write)) this.runs.delete(keyString(write.key))
      })
      return results as Array<WriteResult>
    })
  }

  /**
   * Claims an execution for this pod: only while the pod serves its shard and the shard's fence stands at
   * the pod's epoch. The shard's ownership is the authority: a claim held by another engine (a previous
   * owner) is taken over at once rather than after its lease.
   */
  claim(key: ExecutionKey, owner: string, now: number, claimUntil: number): Effect.Effect<ClaimResult, JournalError> {
    return Effect.gen(this, function*() {
      const placement = yield* this.placementOf(key)
      const epoch = (yield* this.view.served).get(placement.shard)
      const unavailable = () =>
        Effect.map(this.inner.get(key), (row): ClaimResult => ({ _tag: "Unavailable", row: Option.getOrUndefined(row) }))
      if (epoch === undefined || !(yield* this.raiseFence(placement.shard, epoch))) return yield* unavailable()
      // A row locked by another transaction is waited for here, before the shard's fence row is locked: the
      // claim's own lock retries (~155 ms, sql/claims.ts) inside the transaction below held every write of
      // the shard that long, and a claim retried in the background (`claimOrRetryLater`) repeats every 5 s.
      if (!(yield* this.unlocked(key))) {
        const row = yield* this.inner.get(key)
        if (Option.isNone(row) || isTerminal(row.value.status)) return yield* unavailable()
        return yield* rowLocked()
      }
      const claimed = yield* this.transaction(
        "claim",
        Effect.gen(this, function*() {
          const fences = yield* this.lockFences([placement.shard])
          if (fences.get(placement.shard) !== epoch) return undefined
          yield* this.clearOtherClaim(key, owner)
          return yield* this.inner.claim(key, owner, now, claimUntil)
        }),
        true
      )
      if (claimed === undefined) return yield* unavailable()
      if (claimed._tag === "Claimed") this.runs.set(keyString(key), { ...placement, epoch })
      return claimed
    })
  }

  /**
   * PostgreSQL: whether an execution's row is free of another transaction's lock, looking again for a
   * moment (5, 10, 20, 40, 80 ms, live clock: as the claim does) while it is locked. Outside any
   * transaction, so the shard's fence row is not held meanwhile. A row that does not exist counts as free
   * (the claim's transaction finds it missing).
   */
  private unlocked(key: ExecutionKey): Effect.Effect<boolean, JournalError> {
    const { E, sql } = this
    const probe = sql.onDialectOrElse({
      pg: () =>
        withRetries(
          retries,
          "claim",
          Effect.flatMap(
            sql`SELECT 1 AS free FROM ${E} WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}
FOR UPDATE SKIP LOCKED`,
            (rows) =>
              rows.length > 0
                ? Effect.succeed(true)
                : Effect.map(
                  sql`SELECT 1 AS present FROM ${E} WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}`,
                  (present) => present.length === 0
                )
          )
        ),
      orElse: () => undefined
    })
    if (probe === undefined) return Effect.succeed(true)
    return Effect.map(lookAgainWhileLocked(Effect.map(probe, (free) => free || undefined)), (free) => free === true)
  }

  /**
   * Clears another engine's claim of an execution (the shard's owner takes it over). PostgreSQL: a row
   * locked by another transaction is skipped, not waited for (this transaction holds the shard's fence
   * row: waiting would stall every write of the shard for as long as that transaction stays open); the
   * claim that follows finds it locked and reports it so (`claim` in sql/claims.ts).
   */
  private clearOtherClaim(key: ExecutionKey, owner: string) {
    const { E, sql } = this
    const row = sql`workflow = ${key.workflow} AND execution_id = ${key.executionId}`
    const unlocked = sql.onDialectOrElse({
      pg: () => sql`AND (workflow, execution_id) IN (SELECT workflow, execution_id FROM ${E} WHERE ${row} FOR UPDATE SKIP LOCKED)`,
      orElse: () => sql``
    })
    return sql`UPDATE ${E} SET claim_owner = NULL WHERE ${row} AND claim_owner <> ${owner} ${unlocked}`
  }

  private servedShards = Effect.map(
    Effect.suspend(() => this.view.served),
    (served) => Array.from(served.keys())
  )

  nextWakeAt(workflows: ReadonlyArray<string>): Effect.Effect<number | undefined, JournalError> {
    const { E, I, sql } = this
    return Effect.flatMap(this.servedShards, (shards) =>
      workflows.length === 0 || shards.length === 0 ? Effect.succeed(undefined) : withRetries(
        retries,
        "nextWakeAt",
        Effect.map(
          sql<{ wake_at: unknown }>`SELECT MIN(e.wake_at) AS wake_at FROM ${E} e
JOIN ${I} i ON i.workflow = e.workflow AND i.execution_id = e.execution_id
WHERE e.status = 'suspended' AND e.wake_at IS NOT NULL AND e.workflow IN ${sql.in(workflows)}
    AND i.shard_id IN ${sql.in(shards)}`,
          (rows) => rows[0]?.wake_at === null || rows[0]?.wake_at === undefined ? undefined : toNumber(rows[0].wake_at)
        )
      ))
  }

  dueTimers(
    workflows: ReadonlyArray<string>,
    now: number,
    limit: number
  ): Effect.Effect<ReadonlyArray<ExecutionKey>, JournalError> {
    const { E, I, sql } = this
    return Effect.flatMap(this.servedShards, (shards) =>
      workflows.length === 0 || shards.length === 0 || limit <= 0 ? Effect.succeed([]) : withRetries(
        retries,
        "dueTimers",
        Effect.map(
          sql<{ workflow: string; execution_id: string }>`SELECT e.workflow, e.execution_id FROM ${E} e
JOIN ${I} i ON i.workflow = e.workflow AND i.execution_id = e.execution_id
WHERE e.status = 'suspended' AND e.wake_at IS NOT NULL AND e.wake_at <= ${now}
    AND e.workflow IN ${sql.in(workflows)} AND i.shard_id IN ${sql.in(shards)}
ORDER BY e.wake_at, e.workflow, e.execution_id
LIMIT ${sql.literal(String(Math.floor(limit)))}`,
          (rows) => rows.map((row) => ({ workflow: row.workflow, executionId: row.execution_id }))
        )
      ))
  }

  /** The unfinished executions of a shard (through the shard index). */
  shardExecutions(shard: number, workflows: ReadonlyArray<string>): Effect.Effect<Array<ShardExecution>, JournalError> {
    const { E, I, sql } = this
    return workflows.length === 0 ? Effect.succeed([]) : withRetries(
      retries,
      "shardExecutions",
      Effect.map(
        sql<{ workflow: string; execution_id: string; status: string; wake_at: unknown; suspended_on: string | null }>`
SELECT e.workflow, e.execution_id, e.status, e.wake_at, e.suspended_on FROM ${I} i
JOIN ${E} e ON e.workflow = i.workflow AND e.execution_id = i.execution_id
WHERE i.shard_id = ${shard} AND e.status IN ('running', 'suspended') AND e.workflow IN ${sql.in(workflows)}
ORDER BY e.created_at`,
        (rows) =>
          rows.map((row) => ({
            workflow: row.workflow,
            executionId: row.execution_id,
            status: row.status as "running" | "suspended",
            wakeAt: row.wake_at === null ? null : toNumber(row.wake_at),
            suspendedOn: row.suspended_on
          }))
      )
    )
  }
}

/** @internal */
export const noSqlClient = new JournalError({
  operation: "cluster engine",
  message: "The cluster workflow engine needs a SQL journal (DurableExecutionJournalSql) shared by every pod",
  retryable: false
})
