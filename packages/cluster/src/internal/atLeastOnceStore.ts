/**
 * The encoded stores behind `AtLeastOnceStorage`: they see only strings and numbers (the public module owns
 * the codec). One in memory, one in SQL (SQLite and PostgreSQL) with the 2024 table.
 *
 * The SQL store reaches the `SqlClient` by its context key and imports only types from `@effect/sql`, so
 * the package's root entry loads without `@effect/sql` installed.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlError from "@effect/sql/SqlError"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/** One stored message (encoded). */
export interface StoredMessage {
  readonly recipientName: string
  readonly shardId: number
  readonly entityId: string
  readonly messageId: string
  readonly body: string
}

/** A failure of a store operation; the public module turns it into `AtLeastOnceStorageError`. */
export class StoreFailure extends Data.TaggedError("StoreFailure")<{
  readonly operation: string
  readonly message: string
}> {}

/** What a store does. Messages are keyed by (recipientName, entityId, messageId). */
export interface AtLeastOnceStore {
  readonly insertIfAbsent: (message: StoredMessage) => Effect.Effect<void, StoreFailure>
  readonly markProcessed: (
    recipientName: string,
    entityId: string,
    messageId: string
  ) => Effect.Effect<void, StoreFailure>
  /** Every unprocessed message of these shards (streamed in pages). */
  readonly pending: (shardIds: ReadonlyArray<number>) => Stream.Stream<StoredMessage, StoreFailure>
}

/** A store in memory (one per call). Pending messages come out in the order they were stored. */
export const memory = (): AtLeastOnceStore => {
  const messages = new Map<string, { readonly message: StoredMessage; processed: boolean }>()
  const keyOf = (recipientName: string, entityId: string, messageId: string) =>
    JSON.stringify([recipientName, entityId, messageId])
  return {
    insertIfAbsent: (message) =>
      Effect.sync(() => {
        const key = keyOf(message.recipientName, message.entityId, message.messageId)
        if (!messages.has(key)) messages.set(key, { message, processed: false })
      }),
    markProcessed: (recipientName, entityId, messageId) =>
      Effect.sync(() => {
        const entry = messages.get(keyOf(recipientName, entityId, messageId))
        if (entry !== undefined) entry.processed = true
      }),
    pending: (shardIds) =>
      Stream.suspend(() => {
        const shards = new Set(shardIds)
        const rows: Array<StoredMessage> = []
        for (const entry of messages.values()) {
          if (!entry.processed && shards.has(entry.message.shardId)) rows.push(entry.message)
        }
        return Stream.fromIterable(rows)
      })
  }
}

// The `@effect/sql` tag, found by its key without importing the package at run time.
const SqlClientTag = Context.GenericTag<SqlClient.SqlClient>("@effect/sql/SqlClient")

/** Rows per page of the sweep. */
const pageSize = 500

interface Row {
  readonly recipient_name: string
  readonly shard_id: number
  readonly entity_id: string
  readonly message_id: string
  readonly message_body: string
}

const failure = (operation: string) => (error: SqlError.SqlError) =>
  new StoreFailure({
    operation,
    message: error.cause === undefined ? error.message : `${error.message}: ${String(error.cause)}`
  })

/**
 * The SQL store on the `SqlClient` in context. Creates the 2024 table (if absent) and an index of the
 * unprocessed rows. Names are used exactly as given (the client's name transforms are bypassed).
 */
export const sql = (
  table: string
): Effect.Effect<AtLeastOnceStore, SqlError.SqlError | StoreFailure, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClientTag).withoutTransforms()
    const dialect = sql.onDialectOrElse({
      pg: () => "pg" as const,
      sqlite: () => "sqlite" as const,
      orElse: () => "other" as const
    })
    if (dialect === "other") {
      return yield* new StoreFailure({
        operation: "make",
        message: "AtLeastOnceStorage.layer supports SQLite (@effect/sql-libsql) and PostgreSQL (@effect/sql-pg)"
      })
    }
    const T = sql(table)
    const pkey = sql(`${table}_pkey`)
    // The 2024 columns, per dialect (2024 used CLOB and parenthesised defaults on SQLite).
    const create = dialect === "pg"
      ? sql`CREATE TABLE IF NOT EXISTS ${T} (
          recipient_name VARCHAR(255) NOT NULL,
          shard_id INT NOT NULL DEFAULT 0,
          entity_id VARCHAR(255) NOT NULL,
          message_id VARCHAR(255) NOT NULL,
          message_body TEXT NOT NULL,
          processed BOOLEAN NOT NULL DEFAULT FALSE,
          CONSTRAINT ${pkey} PRIMARY KEY (recipient_name, entity_id, message_id)
        )`
      : sql`CREATE TABLE IF NOT EXISTS ${T} (
          recipient_name VARCHAR(255) NOT NULL,
          shard_id INT NOT NULL DEFAULT (0),
          entity_id VARCHAR(255) NOT NULL,
          message_id VARCHAR(255) NOT NULL,
          message_body CLOB NOT NULL,
          processed BOOLEAN NOT NULL DEFAULT (0),
          CONSTRAINT ${pkey} PRIMARY KEY (recipient_name, entity_id, message_id)
        )`
    const index = sql`CREATE INDEX IF NOT EXISTS ${sql(`${table}_pending`)} ON ${T} (shard_id) WHERE processed = FALSE`
    // Two pods creating the table at once can collide in PostgreSQL's catalog; the retry sees the winner's.
    yield* Effect.retry(Effect.zipRight(create, index), { times: 2 })

    const page = (shardIds: ReadonlyArray<number>, after: Row | undefined) =>
      sql<Row>`SELECT recipient_name, shard_id, entity_id, message_id, message_body FROM ${T}
        WHERE processed = FALSE AND shard_id IN ${sql.in(shardIds)}${
        after === undefined
          ? sql``
          : sql` AND (recipient_name, entity_id, message_id) > (${after.recipient_name}, ${after.entity_id}, ${after.message_id})`
      }
        ORDER BY recipient_name, entity_id, message_id
        LIMIT ${sql.literal(String(pageSize))}`

    return {
      insertIfAbsent: (message) =>
        sql`INSERT INTO ${T} (recipient_name, shard_id, entity_id, message_id, message_body)
          VALUES (${message.recipientName}, ${message.shardId}, ${message.entityId}, ${message.messageId}, ${message.body})
          ON CONFLICT (recipient_name, entity_id, message_id) DO NOTHING`.pipe(
          Effect.asVoid,
          Effect.mapError(failure("upsert"))
        ),
      markProcessed: (recipientName, entityId, messageId) =>
        sql`UPDATE ${T} SET processed = TRUE
          WHERE recipient_name = ${recipientName} AND entity_id = ${entityId} AND message_id = ${messageId}`.pipe(
          Effect.asVoid,
          Effect.mapError(failure("markAsProcessed"))
        ),
      pending: (shardIds) =>
        shardIds.length === 0
          ? Stream.empty
          : Stream.paginateChunkEffect(undefined as Row | undefined, (after) =>
            Effect.map(page(shardIds, after), (rows) => {
              const messages = Chunk.fromIterable(rows.map((row): StoredMessage => ({
                recipientName: row.recipient_name,
                shardId: Number(row.shard_id),
                entityId: row.entity_id,
                messageId: row.message_id,
                body: row.message_body
              })))
              const next = rows.length === pageSize ? Option.some(rows[rows.length - 1]) : Option.none()
              return [messages, next] as const
            })).pipe(Stream.mapError(failure("sweepPending")))
    }
  })
