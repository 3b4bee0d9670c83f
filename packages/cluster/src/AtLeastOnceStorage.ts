/**
 * Storage of the messages an at-least-once entity received (2024 name): each message is stored before it
 * is delivered and marked processed once the entity answered `Processed`, so
 * `AtLeastOnce.runPendingMessageSweeperScoped` can deliver the others again after a crash or a restart.
 *
 * Implementations: `layer({ table })`, on the `@effect/sql` `SqlClient` in context (SQLite through
 * `@effect/sql-libsql`, PostgreSQL through `@effect/sql-pg`), in one table with the 2024 columns; and
 * `layerMemory`, for tests and single-process use (lost with the process).
 *
 * This module does not import `@effect/sql` at run time (it finds the `SqlClient` in the context by its
 * key), so the package's root entry stays usable without it; `@effect/sql` is an optional peer that only
 * users of `layer` install.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlError from "@effect/sql/SqlError"
import * as Store from "./internal/atLeastOnceStore.js"
import { primaryKeyOf } from "./internal/primaryKey.js"
import * as RecipientAddress from "./RecipientAddress.js"
import type { RecipientType } from "./RecipientType.js"
import { Serialization } from "./Serialization.js"
import * as SerializedEnvelope from "./SerializedEnvelope.js"
import * as SerializedMessage from "./SerializedMessage.js"
import type { ShardId } from "./ShardId.js"

/**
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/AtLeastOnceStorage")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * A failure of the storage (database down, table missing, a message without a primary key, a body that
 * does not encode...). Unlike 2024, failures are not swallowed: a message that could not be stored is not
 * delivered (see `AtLeastOnce`).
 *
 * @since 0.1.0
 * @category errors
 */
export class AtLeastOnceStorageError extends Schema.TaggedError<AtLeastOnceStorageError>()(
  "AtLeastOnceStorageError",
  { operation: Schema.String, message: Schema.String }
) {}

/**
 * The storage of at-least-once messages. Messages are identified by (recipient type name, entity id,
 * primary key), so storing one again is a no-op.
 *
 * @since 0.1.0
 * @category models
 */
export interface AtLeastOnceStorage extends AtLeastOnceStorage.Proto {
  /** Stores a message as unprocessed, unless it is already stored (then nothing changes). */
  upsert<Msg>(
    recipientType: RecipientType<Msg>,
    shardId: ShardId,
    entityId: string,
    message: Msg
  ): Effect.Effect<void, AtLeastOnceStorageError>
  /** Marks a stored message as processed: the sweeper no longer sends it. */
  markAsProcessed<Msg>(
    recipientType: RecipientType<Msg>,
    shardId: ShardId,
    entityId: string,
    message: Msg
  ): Effect.Effect<void, AtLeastOnceStorageError>
  /** The unprocessed messages of these shards, as envelopes to deliver again (every one of them). */
  sweepPending(shardIds: Iterable<ShardId>): Stream.Stream<SerializedEnvelope.SerializedEnvelope, AtLeastOnceStorageError>
}

/**
 * @since 0.1.0
 */
export declare namespace AtLeastOnceStorage {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Proto {
    readonly [TypeId]: TypeId
  }

  /**
   * Options of `layer` / `make`: `table` is the exact name of the messages table.
   *
   * @since 0.1.0
   * @category models
   */
  export interface MakeOptions {
    readonly table: string
  }
}

/**
 * @since 0.1.0
 * @category context
 */
export const AtLeastOnceStorage: Context.Tag<AtLeastOnceStorage, AtLeastOnceStorage> = Context.GenericTag<
  AtLeastOnceStorage
>("@effect-cluster/cluster/AtLeastOnceStorage")

/** Reads a message's primary key, which identifies it in the storage. */
const messageIdOf = (operation: string, message: unknown): Effect.Effect<string, AtLeastOnceStorageError> => {
  const id = primaryKeyOf(message)
  return id === undefined
    ? Effect.fail(
      new AtLeastOnceStorageError({ operation, message: "at-least-once delivery needs messages with a primary key" })
    )
    : Effect.succeed(id)
}

const fromFailure = (failure: Store.StoreFailure) =>
  new AtLeastOnceStorageError({ operation: failure.operation, message: failure.message })

// The storage over an encoded store (the store sees only strings and numbers; this adapter owns the codec,
// through `Serialization`).
const fromStore = (store: Store.AtLeastOnceStore): Effect.Effect<AtLeastOnceStorage, never, Serialization> =>
  Effect.map(Serialization, (serialization): AtLeastOnceStorage => ({
    [TypeId]: TypeId,
    upsert: (recipientType, shardId, entityId, message) =>
      Effect.flatMap(messageIdOf("upsert", message), (messageId) =>
        serialization.encode(recipientType.schema, message).pipe(
          Effect.mapError((error) => new AtLeastOnceStorageError({ operation: "upsert", message: error.message })),
          Effect.flatMap((body) =>
            Effect.mapError(
              store.insertIfAbsent({
                recipientName: recipientType.name,
                shardId: shardId.value,
                entityId,
                messageId,
                body: body.value
              }),
              fromFailure
            )
          )
        )),
    markAsProcessed: (recipientType, _shardId, entityId, message) =>
      Effect.flatMap(
        messageIdOf("markAsProcessed", message),
        (messageId) => Effect.mapError(store.markProcessed(recipientType.name, entityId, messageId), fromFailure)
      ),
    sweepPending: (shardIds) =>
      store.pending(Array.from(shardIds, (shard) => shard.value)).pipe(
        Stream.mapError(fromFailure),
        Stream.map((row) =>
          SerializedEnvelope.make(
            RecipientAddress.makeRecipientAddress(row.recipientName, row.entityId),
            row.messageId,
            SerializedMessage.make(row.body)
          )
        )
      )
  }))

/**
 * An in-memory storage (per build of the layer), for tests and single-process use: it is lost with the
 * process, so it only covers messages whose entity stopped or failed within the process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<AtLeastOnceStorage, never, Serialization> = Effect.suspend(() =>
  fromStore(Store.memory())
)

/**
 * The in-memory storage as a layer (a fresh, empty storage per build). See `makeMemory`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<AtLeastOnceStorage, never, Serialization> = Layer.effect(
  AtLeastOnceStorage,
  makeMemory
)

/**
 * The SQL storage on the `SqlClient` in context, SQLite or PostgreSQL. Creates the table `options.table`
 * (exactly that name) with the 2024 columns if it does not exist, so an existing 2024 table is used as it
 * is: `recipient_name`, `shard_id`, `entity_id`, `message_id`, `message_body`, `processed`, primary key
 * `(recipient_name, entity_id, message_id)` named `<table>_pkey`. A partial index `<table>_pending` on the
 * unprocessed rows serves the sweep. Other dialects fail with `AtLeastOnceStorageError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: AtLeastOnceStorage.MakeOptions
): Effect.Effect<
  AtLeastOnceStorage,
  SqlError.SqlError | AtLeastOnceStorageError,
  SqlClient.SqlClient | Serialization
> =>
  Effect.flatMap(
    Effect.catchTag(Store.sql(options.table), "StoreFailure", (failure) => Effect.fail(fromFailure(failure))),
    fromStore
  )

/**
 * The SQL storage as a layer (2024 signature, plus the unsupported-dialect error). See `make`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: AtLeastOnceStorage.MakeOptions
): Layer.Layer<AtLeastOnceStorage, SqlError.SqlError | AtLeastOnceStorageError, SqlClient.SqlClient | Serialization> =>
  Layer.effect(AtLeastOnceStorage, make(options))
