/**
 * Writes an entity can fence by the epoch it runs under. An entity instance runs under one epoch of its
 * shard (`RecipientBehaviourContext.epoch`); once the manager has moved the shard, its stored epoch is
 * higher. `FencedWrite` runs an `@effect/sql` write in a transaction whose first statement finds (and
 * locks) the shard's row in the cluster's storage at that epoch: the write commits only if the epoch is
 * still current, and the shard cannot move until it has committed. Otherwise the transaction writes
 * nothing and fails with `StaleEpochError`. This is the "no write made under a stale epoch commits" half of
 * the single-owner guarantee (docs/cluster.md): a pod paused past its lease may still run a handler when it
 * resumes, but not commit its writes.
 *
 * The write must go to the database holding the cluster's tables (`StorageSql`, same table prefix), on the
 * `SqlClient` in context. A subpath export (`@effect-cluster/cluster/FencedWrite`), like `StorageSql`.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { RecipientBehaviourContext } from "../RecipientBehaviourContext.js"
import type { StorageException } from "../Storage.js"
import * as StorageSql from "./StorageSql.js"

/**
 * A fenced write was refused: the shard's current epoch in storage is no longer `epoch` (the shard moved,
 * or was given again, since the instance started). Nothing of the write was committed.
 *
 * @since 0.1.0
 * @category errors
 */
export class StaleEpochError extends Schema.TaggedError<StaleEpochError>()(
  "@effect-cluster/cluster/StaleEpochError",
  {
    shardId: Schema.Number,
    /** The epoch the write was made under. */
    epoch: Schema.Number
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `shard ${this.shardId} is no longer at epoch ${this.epoch}: the write was not committed`
  }
}

/**
 * Fences writes by a shard's epoch in the cluster's storage tables.
 *
 * @since 0.1.0
 * @category models
 */
export interface FencedWrite {
  /** The shard table it checks (`<prefix>_shards`). */
  readonly shardsTable: string
  /**
   * Runs `write` in one transaction after checking that `shardId` is still at `epoch`; fails with
   * `StaleEpochError` (writing nothing) when it is not.
   */
  readonly at: {
    (shardId: number, epoch: number): <A, E, R>(
      write: Effect.Effect<A, E, R>
    ) => Effect.Effect<A, E | StaleEpochError | SqlError, R | SqlClient.SqlClient>
    <A, E, R>(
      write: Effect.Effect<A, E, R>,
      shardId: number,
      epoch: number
    ): Effect.Effect<A, E | StaleEpochError | SqlError, R | SqlClient.SqlClient>
  }
  /** `at` with the running instance's shard and epoch (`RecipientBehaviourContext`). */
  readonly write: <A, E, R>(
    write: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | StaleEpochError | SqlError, R | SqlClient.SqlClient | RecipientBehaviourContext>
}

/**
 * @since 0.1.0
 * @category context
 */
export const FencedWrite: Context.Tag<FencedWrite, FencedWrite> = Context.GenericTag<FencedWrite>(
  "@effect-cluster/cluster/FencedWrite"
)

/**
 * Options: `prefix` is the cluster's table prefix (`StorageSql`'s, default `"effect_cluster"`).
 *
 * @since 0.1.0
 * @category models
 */
export interface FencedWriteOptions {
  readonly prefix?: string | undefined
}

/**
 * Builds the fence for a table prefix (fails on a prefix `StorageSql` would refuse).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: FencedWriteOptions): Effect.Effect<FencedWrite, StorageException> =>
  Effect.map(StorageSql.tableNames(options?.prefix ?? StorageSql.defaultPrefix), (tables) => {
    // PostgreSQL: a shared row lock until commit (the manager's epoch update waits for it; fenced writes of
    // one shard do not wait for each other). SQLite: a no-op update, which takes the database's write lock
    // at once, so the manager's write cannot slip in between the check and the write.
    const check = (shardId: number, epoch: number) =>
      Effect.flatMap(SqlClient.SqlClient, (client) => {
        const sql = client.withoutTransforms()
        const shards = sql(tables.shards)
        return sql.onDialectOrElse({
          pg: () => sql`SELECT shard_id FROM ${shards} WHERE shard_id = ${shardId} AND epoch = ${epoch} FOR SHARE`,
          orElse: () =>
            sql`UPDATE ${shards} SET epoch = epoch WHERE shard_id = ${shardId} AND epoch = ${epoch} RETURNING shard_id`
        })
      })
    const at = dual(3, <A, E, R>(write: Effect.Effect<A, E, R>, shardId: number, epoch: number) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.withTransaction(
          Effect.flatMap(
            check(shardId, epoch),
            (rows): Effect.Effect<A, E | StaleEpochError, R> =>
              rows.length === 1 && epoch > 0 ? write : Effect.fail(new StaleEpochError({ shardId, epoch }))
          )
        ))) as FencedWrite["at"]
    return {
      shardsTable: tables.shards,
      at,
      write: (write) =>
        Effect.flatMap(RecipientBehaviourContext, (context) => at(write, context.shardId.value, context.epoch ?? 0))
    }
  })

/**
 * The fence as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: FencedWriteOptions): Layer.Layer<FencedWrite, StorageException> =>
  Layer.effect(FencedWrite, make(options))

/**
 * Runs `write` under the running instance's epoch, with the `FencedWrite` in context (see `FencedWrite.write`).
 *
 * @since 0.1.0
 * @category combinators
 */
export const write = <A, E, R>(
  write: Effect.Effect<A, E, R>
): Effect.Effect<
  A,
  E | StaleEpochError | SqlError,
  R | FencedWrite | SqlClient.SqlClient | RecipientBehaviourContext
> => Effect.flatMap(FencedWrite, (fence) => fence.write(write))
