/**
 * The SQL storage's statements: one set for SQLite and PostgreSQL, differences through `onDialectOrElse`.
 * Every lease operation is a single conditional statement, so racing processes cannot both succeed.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import { Pod } from "../../Pod.js"
import { PodAddress } from "../../PodAddress.js"
import { ShardId } from "../../ShardId.js"
import type { HeldShard, ManagerLease } from "../../Storage.js"
import type { TableNames } from "./migrations.js"
import { num, type Rows } from "./rows.js"

// Rows per multi-row INSERT: far below both databases' bound on parameters per statement.
const chunkSize = 500

const chunks = <A>(items: ReadonlyArray<A>): Array<ReadonlyArray<A>> => {
  const result: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += chunkSize) result.push(items.slice(i, i + chunkSize))
  return result
}

const managerRow = "manager"

export const make = (sql: SqlClient.SqlClient, t: TableNames) => {
  const shards = sql(t.shards)
  const pods = sql(t.pods)
  const lease = sql(t.managerLease)
  // Null-safe equality: SQLite's `IS`, the standard's `IS NOT DISTINCT FROM` on PostgreSQL.
  const same = sql.onDialectOrElse({ pg: () => "IS NOT DISTINCT FROM", orElse: () => "IS" })
  const greatest = sql.onDialectOrElse({ pg: () => "GREATEST", orElse: () => "MAX" })
  const forShare = sql.onDialectOrElse({ pg: () => " FOR SHARE", orElse: () => "" })
  // The database's clock, ms since 1970: every lease is measured on it, whichever process writes.
  const nowMillis = sql.literal(sql.onDialectOrElse({
    pg: () => "(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000))::BIGINT",
    orElse: () => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
  }))

  const readAssignments = Effect.map(
    sql`SELECT shard_id, pod_host, pod_port FROM ${shards} ORDER BY shard_id`,
    (rows: Rows) =>
      HashMap.fromIterable(rows.map((row) => [
        new ShardId({ value: num(row.shard_id) }),
        row.pod_host === null || row.pod_host === undefined
          ? Option.none<PodAddress>()
          : Option.some(new PodAddress({ host: String(row.pod_host), port: num(row.pod_port) }))
      ] as const))
  )

  const readEpochs = Effect.map(
    sql`SELECT shard_id, epoch FROM ${shards} WHERE epoch > 0 ORDER BY shard_id`,
    (rows: Rows) => HashMap.fromIterable(rows.map((row) => [new ShardId({ value: num(row.shard_id) }), num(row.epoch)] as const))
  )

  const readPods = Effect.map(
    sql`SELECT host, port, version FROM ${pods} ORDER BY host, port`,
    (rows: Rows) =>
      HashMap.fromIterable(rows.map((row) => {
        const address = new PodAddress({ host: String(row.host), port: num(row.port) })
        return [address, new Pod({ address, version: String(row.version) })] as const
      }))
  )

  const keyOf = (host: unknown, port: unknown) => `${String(host)}:${num(port)}`

  // A shard keeps its owner's incarnation while the owner stays; a new owner brings its current one.
  const writeAssignments = (
    assignments: HashMap.HashMap<ShardId, Option.Option<PodAddress>>
  ): Effect.Effect<void, SqlError> =>
    Effect.gen(function*() {
      const current = new Map(
        (yield* sql`SELECT host, port, incarnation FROM ${pods}`).map((row) => [keyOf(row.host, row.port), String(row.incarnation)])
      )
      const rows = Array.from(assignments, ([shardId, owner]) => ({
        shard_id: shardId.value,
        pod_host: Option.isSome(owner) ? owner.value.host : null,
        pod_port: Option.isSome(owner) ? owner.value.port : null,
        incarnation: Option.isSome(owner) ? current.get(keyOf(owner.value.host, owner.value.port)) ?? "" : null,
        epoch: 0
      }))
      for (const chunk of chunks(rows)) {
        yield* sql`INSERT INTO ${shards} ${sql.insert(chunk)} ON CONFLICT (shard_id) DO UPDATE SET
  incarnation = CASE WHEN ${shards}.pod_host ${sql.literal(same)} excluded.pod_host
    AND ${shards}.pod_port ${sql.literal(same)} excluded.pod_port
    THEN ${shards}.incarnation ELSE excluded.incarnation END,
  pod_host = excluded.pod_host,
  pod_port = excluded.pod_port`
      }
    })

  const readNow: Effect.Effect<number, SqlError> = Effect.map(
    sql`SELECT ${nowMillis} AS now`,
    (rows: Rows) => num(rows[0]!.now)
  )

  // Released shards (their owner confirmed it stopped them at that epoch) have no lease any more.
  const releaseLeases = (released: ReadonlyArray<HeldShard>): Effect.Effect<void, SqlError> =>
    Effect.forEach(
      chunks(released),
      (chunk) =>
        sql`UPDATE ${shards} SET lease_expires_at = NULL WHERE ${
          sql.or(chunk.map((held) => sql`(shard_id = ${held.shardId} AND epoch = ${held.epoch})`))
        }`,
      { discard: true }
    )

  /**
   * Owners and epochs in one conditional statement per chunk. A row changes owner (to another pod) only if
   * the previous owner's lease has been over for `marginMillis` at `now` (or it has none); its epoch grows
   * in the same statement, so a refused move bumps nothing. A new owner, or the same owner at a higher
   * epoch, gets the lease `leaseEnd` (null: none); a row set to no owner keeps the lease it had, so the
   * shard cannot move before it ends. Returns the shards written (the others were refused).
   */
  const writeShards = (
    rows: ReadonlyArray<{ shardId: number; owner: PodAddress | undefined; epoch: number }>,
    now: number,
    marginMillis: number,
    leaseEnd: number | null
  ): Effect.Effect<ReadonlyArray<number>, SqlError> =>
    Effect.gen(function*() {
      const current = new Map(
        (yield* sql`SELECT host, port, incarnation FROM ${pods}`).map((row) => [keyOf(row.host, row.port), String(row.incarnation)])
      )
      const written: Array<number> = []
      const sameOwner = sql`${shards}.pod_host ${sql.literal(same)} excluded.pod_host
    AND ${shards}.pod_port ${sql.literal(same)} excluded.pod_port`
      for (const chunk of chunks(rows)) {
        const values = chunk.map((row) => ({
          shard_id: row.shardId,
          pod_host: row.owner?.host ?? null,
          pod_port: row.owner?.port ?? null,
          incarnation: row.owner === undefined ? null : current.get(keyOf(row.owner.host, row.owner.port)) ?? "",
          epoch: row.epoch,
          lease_expires_at: row.owner === undefined ? null : leaseEnd
        }))
        const result: Rows = yield* sql`INSERT INTO ${shards} ${sql.insert(values)} ON CONFLICT (shard_id) DO UPDATE SET
  incarnation = CASE WHEN ${sameOwner} AND excluded.epoch <= ${shards}.epoch
    THEN ${shards}.incarnation ELSE excluded.incarnation END,
  lease_expires_at = CASE WHEN excluded.pod_host IS NULL THEN ${shards}.lease_expires_at
    WHEN ${sameOwner} AND excluded.epoch <= ${shards}.epoch THEN ${shards}.lease_expires_at
    ELSE excluded.lease_expires_at END,
  pod_host = excluded.pod_host,
  pod_port = excluded.pod_port,
  epoch = ${sql.literal(greatest)}(${shards}.epoch, excluded.epoch)
WHERE excluded.pod_host IS NULL OR (${sameOwner}) OR ${shards}.lease_expires_at IS NULL
  OR ${shards}.lease_expires_at + ${marginMillis} <= ${now}
RETURNING shard_id`
        for (const row of result) written.push(num(row.shard_id))
      }
      return written
    })

  /**
   * When the next of `shardIds` may move (database clock): the latest lease end among those whose lease ends
   * within `groupMillis` of the earliest. Shards one pod renewed together end together (give or take a
   * renewal in flight): one write moves them all, instead of one write per straggler.
   */
  const nextLeaseEnd = (
    shardIds: ReadonlyArray<number>,
    groupMillis: number
  ): Effect.Effect<number | undefined, SqlError> => {
    if (shardIds.length === 0) return Effect.succeed(undefined)
    const among = sql.or(chunks(shardIds).map((chunk) => sql.in("shard_id", chunk)))
    return Effect.map(
      sql`SELECT MAX(lease_expires_at) AS next FROM ${shards} WHERE (${among})
  AND lease_expires_at <= (SELECT MIN(lease_expires_at) FROM ${shards} WHERE (${among})) + ${groupMillis}`,
      (rows: Rows) => rows[0]?.next === null || rows[0]?.next === undefined ? undefined : num(rows[0].next)
    )
  }

  /**
   * A pod's renewal of its shards' leases: one conditional statement (compare-and-set on each shard's
   * owner and epoch, and on the pod's row having this incarnation); a lapsed lease is not renewed.
   */
  const renewShardLeases = (
    address: PodAddress,
    incarnation: string,
    held: ReadonlyArray<HeldShard>,
    leaseMillis: number
  ): Effect.Effect<ReadonlyArray<number>, SqlError> =>
    held.length === 0 ? Effect.succeed([]) : Effect.map(
      sql`UPDATE ${shards} SET lease_expires_at = ${nowMillis} + ${Math.max(0, Math.floor(leaseMillis))}
WHERE pod_host = ${address.host} AND pod_port = ${address.port}
  AND lease_expires_at > ${nowMillis}
  AND EXISTS (SELECT 1 FROM ${pods} p WHERE p.host = ${address.host} AND p.port = ${address.port}
    AND p.incarnation = ${incarnation})
  AND (${sql.or(held.map((shard) => sql`(shard_id = ${shard.shardId} AND epoch = ${shard.epoch})`))})
RETURNING shard_id`,
      (rows: Rows) => rows.map((row) => num(row.shard_id)).sort((a, b) => a - b)
    )

  // Epochs only grow, whatever order writes land in.
  const writeEpochs = (epochs: HashMap.HashMap<ShardId, number>): Effect.Effect<void, SqlError> =>
    Effect.forEach(
      chunks(Array.from(epochs, ([shardId, epoch]) => ({
        shard_id: shardId.value,
        pod_host: null,
        pod_port: null,
        incarnation: null,
        epoch
      }))),
      (chunk) =>
        sql`INSERT INTO ${shards} ${sql.insert(chunk)} ON CONFLICT (shard_id) DO UPDATE SET
  epoch = ${sql.literal(greatest)}(${shards}.epoch, excluded.epoch)`,
      { discard: true }
    )

  // Pods not in the map are removed; a known pod keeps its incarnation and renewals.
  const writePods = (next: HashMap.HashMap<PodAddress, Pod>): Effect.Effect<void, SqlError> =>
    Effect.gen(function*() {
      const keep = new Set(Array.from(HashMap.keys(next), (address) => keyOf(address.host, address.port)))
      for (const row of yield* sql`SELECT host, port FROM ${pods}`) {
        if (!keep.has(keyOf(row.host, row.port))) {
          yield* sql`DELETE FROM ${pods} WHERE host = ${String(row.host)} AND port = ${num(row.port)}`
        }
      }
      const rows = Array.from(HashMap.values(next), (pod) => ({
        host: pod.address.host,
        port: pod.address.port,
        version: pod.version,
        incarnation: "",
        lease_renewals: 0
      }))
      for (const chunk of chunks(rows)) {
        yield* sql`INSERT INTO ${pods} ${sql.insert(chunk)} ON CONFLICT (host, port) DO UPDATE SET
  version = excluded.version`
      }
    })

  const registerPod = (pod: Pod, incarnation: string) =>
    sql`INSERT INTO ${pods} ${
      sql.insert({ host: pod.address.host, port: pod.address.port, version: pod.version, incarnation, lease_renewals: 0 })
    } ON CONFLICT (host, port) DO UPDATE SET
  version = excluded.version, incarnation = excluded.incarnation, lease_renewals = 0`.pipe(Effect.asVoid)

  const renewPodLease = (address: PodAddress, incarnation: string) =>
    sql`UPDATE ${pods} SET lease_renewals = lease_renewals + 1
WHERE host = ${address.host} AND port = ${address.port} AND incarnation = ${incarnation}
RETURNING lease_renewals`

  const heldShards = (address: PodAddress, incarnation: string): Effect.Effect<ReadonlyArray<HeldShard>, SqlError> =>
    Effect.map(
      sql`SELECT shard_id, epoch FROM ${shards}
WHERE pod_host = ${address.host} AND pod_port = ${address.port} AND incarnation = ${incarnation}
ORDER BY shard_id`,
      (rows: Rows) => rows.map((row) => ({ shardId: num(row.shard_id), epoch: num(row.epoch) }))
    )

  // The shard is held by this incarnation, and the pod has not restarted since. Inside a transaction on
  // PostgreSQL the rows stay locked (FOR SHARE) until commit: no re-assignment can commit in between (the
  // Temporal range-id pattern).
  const holdsShard = (address: PodAddress, incarnation: string, shardId: number, epoch: number) =>
    sql`SELECT s.shard_id FROM ${shards} s
JOIN ${pods} p ON p.host = s.pod_host AND p.port = s.pod_port AND p.incarnation = s.incarnation
WHERE s.shard_id = ${shardId} AND s.epoch = ${epoch}
  AND s.pod_host = ${address.host} AND s.pod_port = ${address.port} AND s.incarnation = ${incarnation}${
      sql.literal(forShare)
    }`

  const readManagerLease: Effect.Effect<Option.Option<ManagerLease>, SqlError> = Effect.map(
    sql`SELECT holder, term, renewals FROM ${lease} WHERE name = ${managerRow}`,
    (rows: Rows) =>
      rows.length === 0
        ? Option.none()
        : Option.some({ holder: String(rows[0]!.holder), term: num(rows[0]!.term), renewals: num(rows[0]!.renewals) })
  )

  const acquireManagerLease = (
    holder: string,
    observed: Option.Option<ManagerLease>
  ): Effect.Effect<Option.Option<number>, SqlError> =>
    Effect.map(
      Option.match(observed, {
        onNone: () =>
          sql`INSERT INTO ${lease} ${sql.insert({ name: managerRow, holder, term: 1, renewals: 0 })}
ON CONFLICT (name) DO NOTHING RETURNING term`,
        onSome: (seen) =>
          sql`UPDATE ${lease} SET holder = ${holder}, term = term + 1, renewals = 0
WHERE name = ${managerRow} AND term = ${seen.term} AND renewals = ${seen.renewals}
RETURNING term`
      }),
      (rows: Rows) => rows.length === 1 ? Option.some(num(rows[0]!.term)) : Option.none()
    )

  const renewManagerLease = (holder: string, term: number) =>
    sql`UPDATE ${lease} SET renewals = renewals + 1
WHERE name = ${managerRow} AND holder = ${holder} AND term = ${term}
RETURNING renewals`

  // The first statement of a fenced write's transaction: it locks the lease row until commit, so a
  // take-over either commits before (and this finds no row) or waits until after this write.
  const checkManagerLease = (holder: string, term: number) =>
    sql`UPDATE ${lease} SET renewals = renewals
WHERE name = ${managerRow} AND holder = ${holder} AND term = ${term}
RETURNING term`

  return {
    readAssignments,
    readEpochs,
    readPods,
    writeAssignments,
    writeEpochs,
    writePods,
    readNow,
    releaseLeases,
    writeShards,
    nextLeaseEnd,
    renewShardLeases,
    registerPod,
    renewPodLease,
    heldShards,
    holdsShard,
    readManagerLease,
    acquireManagerLease,
    renewManagerLease,
    checkManagerLease
  }
}
