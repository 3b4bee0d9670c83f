/**
 * The shard manager's `Storage` on `@effect/sql`: one set of statements for SQLite (`@effect/sql-libsql`)
 * and PostgreSQL (`@effect/sql-pg`), versioned migrations, a table prefix. It is a `LeasedStorage`: pod
 * incarnations and leases, and the manager lease that fences a deposed manager's writes. A subpath export
 * (`@effect-cluster/cluster/StorageSql`), not part of the root entry. Schema: docs/sql-schema.md.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Migrations from "../internal/storageSql/migrations.js"
import * as SqlClientUrl from "./internal/sqlClient.js"
import { type Rows, toStorageException } from "../internal/storageSql/rows.js"
import * as Statements from "../internal/storageSql/statements.js"
import { type LeasedStorage, PodLeases, Storage, StorageException } from "../Storage.js"

/**
 * Options of the SQL storage.
 *
 * @since 0.1.0
 * @category models
 */
export interface StorageSqlOptions {
  /**
   * Prefix of the table names (`<prefix>_pods`, `<prefix>_shards`, `<prefix>_manager_lease`,
   * `<prefix>_migrations`): letters, digits and `_`, at most 40 characters. Default: `"effect_cluster"`.
   */
  readonly prefix?: string | undefined
  /** How often `assignmentsStream` reads the assignments. Default: 1 second. */
  readonly pollInterval?: Duration.DurationInput | undefined
}

// Refused shards whose leases end within this of the first one's are retried together (see SaveResult).
const retryGroupMillis = 1_000

/**
 * The default table prefix.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPrefix = "effect_cluster"

/**
 * The table names of a prefix (fails on a prefix that is not a plain identifier).
 *
 * @since 0.1.0
 * @category models
 */
export const tableNames = (prefix: string): Effect.Effect<Migrations.TableNames, StorageException> =>
  /^[A-Za-z_][A-Za-z0-9_]{0,39}$/.test(prefix)
    ? Effect.succeed(Migrations.tablesOf(prefix))
    : Effect.fail(new StorageException({ reason: `invalid table prefix ${JSON.stringify(prefix)}` }))

/**
 * Creates or upgrades the tables of a prefix (idempotent, serialised between processes).
 *
 * @since 0.1.0
 * @category migrations
 */
export const migrate = (
  options?: Pick<StorageSqlOptions, "prefix">
): Effect.Effect<ReadonlyArray<number>, StorageException, SqlClient.SqlClient> =>
  Effect.flatMap(tableNames(options?.prefix ?? defaultPrefix), (tables) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) => Migrations.run(sql.withoutTransforms(), tables)))

/**
 * Builds the storage on the `SqlClient` in context, after running the migrations.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: StorageSqlOptions
): Effect.Effect<LeasedStorage, StorageException, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const tables = yield* tableNames(options?.prefix ?? defaultPrefix)
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    yield* Migrations.run(sql, tables)
    const statements = Statements.make(sql, tables)
    const run = <A>(what: string, effect: Effect.Effect<A, SqlError | StorageException>) =>
      Effect.mapError(effect, (error) => toStorageException(what, error))
    // @effect/sql reports a failed COMMIT as a defect: it is a storage failure like any other.
    const transaction = <A>(what: string, body: Effect.Effect<A, SqlError | StorageException>) =>
      run(what, sql.withTransaction(body)).pipe(
        Effect.catchAllDefect((defect) => Effect.fail(toStorageException(`${what} (commit)`, defect)))
      )

    const getAssignments = run("reading the assignments", statements.readAssignments)
    const fenceOf = (holder: string, term: number): Effect.Effect<void, SqlError | StorageException> =>
      Effect.flatMap(statements.checkManagerLease(holder, term), (held: Rows) =>
        held.length === 1
          ? Effect.void
          : Effect.fail(
            new StorageException({ reason: `manager ${holder} (term ${term}) no longer holds the manager lease`, fenced: true })
          ))

    const writes = (fence: Effect.Effect<void, SqlError | StorageException>) => ({
      saveAssignments: (assignments: Parameters<LeasedStorage["saveAssignments"]>[0]) =>
        transaction("saving the assignments", Effect.zipRight(fence, statements.writeAssignments(assignments))),
      savePods: (pods: Parameters<LeasedStorage["savePods"]>[0]) =>
        transaction("saving the pods", Effect.zipRight(fence, statements.writePods(pods))),
      saveEpochs: (epochs: Parameters<LeasedStorage["saveEpochs"]>[0]) =>
        transaction("saving the epochs", Effect.zipRight(fence, statements.writeEpochs(epochs))),
      saveAll: (state: Parameters<LeasedStorage["saveAll"]>[0]) =>
        transaction(
          "saving the manager's state",
          Effect.gen(function*() {
            yield* fence
            const now = yield* statements.readNow
            yield* statements.releaseLeases(state.released ?? [])
            yield* statements.writePods(state.pods)
            // Shards with an assignment: owner and epoch in one conditional statement; others: the epoch.
            const rows = Array.from(state.assignments, ([shardId, owner]) => ({
              shardId: shardId.value,
              owner: Option.getOrUndefined(owner),
              epoch: Option.getOrElse(HashMap.get(state.epochs, shardId), () => 0)
            }))
            yield* statements.writeEpochs(HashMap.filter(state.epochs, (_, shardId) => !HashMap.has(state.assignments, shardId)))
            const written = new Set(
              yield* statements.writeShards(
                rows,
                now,
                state.lease?.marginMillis ?? 0,
                state.lease === undefined ? null : now + state.lease.durationMillis
              )
            )
            const refused = rows.filter((row) => !written.has(row.shardId)).map((row) => row.shardId).sort((a, b) => a - b)
            // When the first refused shards may move, on the database's clock: the manager tries again then.
            const next = yield* statements.nextLeaseEnd(refused, retryGroupMillis)
            const margin = state.lease?.marginMillis ?? 0
            return { refused, retryInMillis: next === undefined ? undefined : Math.max(0, next + margin - now) }
          })
        )
    })

    const storage: LeasedStorage = {
      getAssignments,
      assignmentsStream: Stream.repeatEffectWithSchedule(
        getAssignments,
        Schedule.spaced(options?.pollInterval ?? Duration.seconds(1))
      ).pipe(Stream.changesWith((a, b) => Equal.equals(a, b))),
      getPods: run("reading the pods", statements.readPods),
      getEpochs: run("reading the epochs", statements.readEpochs),
      ...writes(Effect.void),
      registerPod: (pod, incarnation) => run("registering a pod", statements.registerPod(pod, incarnation)),
      renewPodLease: (address, incarnation) =>
        transaction(
          "renewing a pod lease",
          Effect.flatMap(statements.renewPodLease(address, incarnation), (renewed) =>
            renewed.length === 0
              ? Effect.succeed(Option.none())
              : Effect.map(statements.heldShards(address, incarnation), Option.some))
        ),
      renewShardLeases: (address, incarnation, held, leaseMillis) =>
        run("renewing shard leases", statements.renewShardLeases(address, incarnation, held, leaseMillis)),
      holdsShard: (address, incarnation, shardId, epoch) =>
        run("checking a shard", Effect.map(statements.holdsShard(address, incarnation, shardId, epoch), (rows) => rows.length === 1)),
      getManagerLease: run("reading the manager lease", statements.readManagerLease),
      acquireManagerLease: (holder, observed) =>
        run("acquiring the manager lease", statements.acquireManagerLease(holder, observed)),
      renewManagerLease: (holder, term) =>
        run("renewing the manager lease", Effect.map(statements.renewManagerLease(holder, term), (rows) => rows.length === 1)),
      fencedBy: (holder, term) => ({ ...storage, ...writes(fenceOf(holder, term)) })
    }
    return storage
  })

/**
 * The SQL storage as the manager's `Storage`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: StorageSqlOptions
): Layer.Layer<Storage, StorageException, SqlClient.SqlClient> => Layer.effect(Storage, make(options))

/**
 * The SQL storage as a pod's `PodLeases`: provided to a pod (`NodeCluster.layerPod(...).pipe(Layer.provide(
 * StorageSql.layerPodLeases(...)))`), it makes the pod record its incarnation and renew its shards' leases
 * in the database itself, so it keeps serving while the shard manager is down. Use the manager's prefix.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPodLeases = (
  options?: StorageSqlOptions
): Layer.Layer<PodLeases, StorageException, SqlClient.SqlClient> => Layer.effect(PodLeases, make(options))

/**
 * The SQL client of a database URL, for the manager and the pods alike: PostgreSQL for `postgres://` and
 * `postgresql://` URLs (`@effect/sql-pg`), a SQLite file for `file:` URLs and plain paths
 * (`@effect/sql-libsql`); each driver is loaded only when its database is used. Several processes on one
 * SQLite file (a manager and its pods on one machine) take turns at the file's write lock: a SQLite
 * statement waits up to `busyTimeout` (default 1 second) for another connection's lock instead of failing
 * at once with `SQLITE_BUSY`. The local driver is synchronous, so the wait blocks the process's event loop;
 * the cluster's own write transactions hold the lock for milliseconds. Fails with `StorageException` on
 * an unsupported URL or a missing driver (the message names only the URL's scheme).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (
  url: string,
  options?: { readonly busyTimeout?: Duration.DurationInput | undefined }
): Layer.Layer<SqlClient.SqlClient, unknown> => Layer.unwrapEffect(SqlClientUrl.layerFromUrl(url, options))
