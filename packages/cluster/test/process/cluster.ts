/**
 * What the multi-process tests share between the parent and the pod children: the cluster's timing (short
 * leases, so a lost pod's shards move within seconds), and the observer table where every entity records
 * its start, stop and each message it handles, with the pod process (incarnation) that ran it.
 */
import { type ShardingConfig } from "@effect-cluster/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect } from "effect"

/**
 * Lease 5 s, renewed every 1.5 s (each renewal bounded by 750 ms); the manager moves a silent pod's shards
 * after 6 s. Shorter leases make the file faster but let a heavily loaded machine (a load average of 20 on
 * two cores was seen) miss renewals of healthy pods.
 */
export const timing: Timing = {
  leaseDuration: 5_000,
  leaseRenewalInterval: 1_500,
  leaseMargin: 1_000,
  entityTerminationTimeout: 1_500
}

/** A cluster's lease timing (ms), for the pods, the client and the manager alike. */
export interface Timing {
  readonly leaseDuration: number
  readonly leaseRenewalInterval: number
  readonly leaseMargin: number
  readonly entityTerminationTimeout: number
}

/** A short lease (3 s, renewed every 750 ms, margin 1.5 s) for the tests that wait for whole leases to pass. */
export const shortTiming: Timing = {
  leaseDuration: 3_000,
  leaseRenewalInterval: 750,
  leaseMargin: 1_500,
  entityTerminationTimeout: 500
}

/** The number of shards of the test clusters. */
export const numberOfShards = 30

/** The pods' (and the parent client's) sharding settings. */
export const shardingConfig = (managerUri: string, t: Timing = timing): Partial<ShardingConfig.ShardingConfig> => ({
  shardingPort: 0,
  shardManagerUri: managerUri,
  numberOfShards,
  leaseDuration: Duration.millis(t.leaseDuration),
  leaseRenewalInterval: Duration.millis(t.leaseRenewalInterval),
  leaseMargin: Duration.millis(t.leaseMargin),
  entityTerminationTimeout: Duration.millis(t.entityTerminationTimeout),
  sendRetryInterval: Duration.millis(50),
  sendRetryTimeout: Duration.seconds(15)
})

/** What a pod child reads from `CLUSTER_POD_CHILD`. */
export interface PodChildConfig {
  readonly name: string
  /** Every manager's URI, comma-separated (the active one and the standbys). */
  readonly managerUri: string
  readonly observerTable: string
  /** The cluster's tables: the pod renews its shards' leases there (`StorageSql.layerPodLeases`); the fenced
   * writes check its shard table. */
  readonly tablePrefix: string
  /** Where a `fenced <entityId>` command writes (entity_id, incarnation, epoch). */
  readonly fencedTable: string
  readonly timing: Timing
}

/** Creates the table the pods' fenced writes go to. */
export const createFencedTable = (table: string): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE ${sql(table)} (
      entity_id TEXT NOT NULL,
      incarnation TEXT NOT NULL,
      epoch BIGINT NOT NULL
    )`.pipe(Effect.asVoid))

/** One row of the observer table. */
export interface ObserverRow {
  readonly id: number
  readonly entity_id: string
  readonly incarnation: string
  readonly event: "start" | "stop" | "msg" | "killed" | "frozen" | "resumed"
  readonly message_id: string | null
  /** The writer's wall clock (ms) when the event happened: a pod takes it as it starts handling. */
  readonly at: number
}

/** Creates the observer table. */
export const createObserverTable = (table: string): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE ${sql(table)} (
      id BIGSERIAL PRIMARY KEY,
      entity_id TEXT NOT NULL,
      incarnation TEXT NOT NULL,
      event TEXT NOT NULL,
      message_id TEXT,
      at BIGINT NOT NULL
    )`.pipe(Effect.asVoid))

/** Appends an event (its `id`, from a sequence, orders events of all processes). */
export const record = (
  table: string,
  row: Omit<ObserverRow, "id">
): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`INSERT INTO ${sql(table)} (entity_id, incarnation, event, message_id, at)
      VALUES (${row.entity_id}, ${row.incarnation}, ${row.event}, ${row.message_id}, ${row.at})`.pipe(Effect.asVoid))

/** Every event, in order. */
export const readEvents = (table: string): Effect.Effect<ReadonlyArray<ObserverRow>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<ObserverRow>`SELECT id, entity_id, incarnation, event, message_id, at FROM ${sql(table)} ORDER BY id`,
      (rows) => rows.map((row) => ({ ...row, id: Number(row.id), at: Number(row.at) }))
    ))

/**
 * The single-owner check over the observer's events: for each entity, once another incarnation started
 * it, the earlier one had stopped it, or had been killed or frozen (a `killed`/`frozen` row for the whole
 * incarnation, written by the parent with its clock just before the signal) before; and an earlier
 * incarnation starts handling no message of that entity afterwards. A frozen pod's handler that had
 * begun before the freeze (its `at` is earlier) may still write its row after the resume: that is the
 * limit docs/cluster.md states (a paused process runs a few instructions before it looks at its lease),
 * and what fenced writes are for. A `resumed` row (after SIGCONT) makes the incarnation live again: it may
 * get shards back from the manager, and its new instances are its own. A message is handled by one
 * incarnation only. Returns the violations
 * (none expected).
 */
export const singleOwnerViolations = (events: ReadonlyArray<ObserverRow>): Array<string> => {
  const violations: Array<string> = []
  const frozenAt = new Map<string, number>()
  // Incarnations that run nothing now (killed, or frozen and not yet resumed).
  const down = new Set<string>()
  const running = new Map<string, Set<string>>()
  const superseded = new Map<string, Set<string>>()
  const handledBy = new Map<string, string>()
  for (const event of events) {
    if (event.event === "killed" || event.event === "frozen") {
      down.add(event.incarnation)
      if (event.event === "frozen") frozenAt.set(event.incarnation, event.at)
      continue
    }
    if (event.event === "resumed") {
      down.delete(event.incarnation)
      continue
    }
    const live = running.get(event.entity_id) ?? new Set<string>()
    running.set(event.entity_id, live)
    const old = superseded.get(event.entity_id) ?? new Set<string>()
    superseded.set(event.entity_id, old)
    if (event.event === "start") {
      for (const other of live) {
        if (other === event.incarnation) continue
        if (!down.has(other)) {
          violations.push(`#${event.id} ${event.entity_id} started on ${event.incarnation} while running on ${other}`)
        }
        old.add(other)
        live.delete(other)
      }
      // A pod that got the shard back (a later assignment) runs a new instance: its own again.
      old.delete(event.incarnation)
      live.add(event.incarnation)
    } else if (event.event === "stop") {
      live.delete(event.incarnation)
    } else {
      const frozen = frozenAt.get(event.incarnation)
      if (old.has(event.incarnation) && !(frozen !== undefined && event.at < frozen)) {
        violations.push(`#${event.id} ${event.entity_id}: ${event.incarnation} handled ${event.message_id} after another took over`)
      }
      const key = `${event.entity_id}/${event.message_id}`
      const first = handledBy.get(key)
      if (first !== undefined && first !== event.incarnation) {
        violations.push(`#${event.id} message ${key} handled by ${first} and ${event.incarnation}`)
      }
      handledBy.set(key, event.incarnation)
    }
  }
  return violations
}
