/**
 * AtLeastOnce and AtLeastOnceStorage, as 2024 programs use them (each module through its own subpath):
 * the 2024 test cases on a SQLite file and on PostgreSQL, and what 2024 got wrong: a message that could
 * not be stored is not delivered; the sweep re-sends every pending message of the pod's shards (several
 * per shard), and only of the pod's shards.
 */
import * as AtLeastOnce from "@effect-cluster/cluster/AtLeastOnce"
import * as AtLeastOnceStorage from "@effect-cluster/cluster/AtLeastOnceStorage"
import * as Message from "@effect-cluster/cluster/Message"
import * as MessageState from "@effect-cluster/cluster/MessageState"
import * as Pods from "@effect-cluster/cluster/Pods"
import * as PodsHealth from "@effect-cluster/cluster/PodsHealth"
import * as RecipientBehaviour from "@effect-cluster/cluster/RecipientBehaviour"
import * as RecipientType from "@effect-cluster/cluster/RecipientType"
import * as Serialization from "@effect-cluster/cluster/Serialization"
import * as Sharding from "@effect-cluster/cluster/Sharding"
import * as ShardingConfig from "@effect-cluster/cluster/ShardingConfig"
import * as ShardingException from "@effect-cluster/cluster/ShardingException"
import * as ShardManagerClient from "@effect-cluster/cluster/ShardManagerClient"
import * as Storage from "@effect-cluster/cluster/Storage"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HashSet from "effect/HashSet"
import { pipe } from "effect/Function"
import * as Layer from "effect/Layer"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { eventually, makeTestCluster, settle } from "./utils/cluster.js"
import { columnsOf, dropTableOnClose, sqlCases, uniqueTable } from "./utils/sql.js"

// The 2024 test's message: a plain TaggedRequest with a primary key.
class SampleMessage extends Schema.TaggedRequest<SampleMessage>()("SampleMessage", {
  failure: Schema.Never,
  success: Schema.Void,
  payload: { id: Schema.String, value: Schema.Number }
}) {
  [PrimaryKey.symbol]() {
    return this.id
  }
}
const SampleEntity = RecipientType.makeEntityType("SampleEntity", SampleMessage)

class Deposit extends Message.TaggedMessage<Deposit>()(
  "Deposit",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, amount: Schema.Number },
  (_) => _.id
) {}
const Account = RecipientType.makeEntityType("Account", Deposit)

// The 2024 test's single pod.
const shardingLayer = Sharding.live.pipe(
  Layer.provideMerge(PodsHealth.local),
  Layer.provideMerge(Pods.noop),
  Layer.provideMerge(Storage.memory),
  Layer.provideMerge(ShardManagerClient.local),
  Layer.provideMerge(ShardingConfig.withDefaults({ entityTerminationTimeout: Duration.seconds(4) }))
)

/** Registers SampleEntity as an at-least-once entity whose handler answers `state`, and sends it message "a". */
const sendOneAnswering = (state: MessageState.MessageState<Exit.Exit<void>>) =>
  Effect.gen(function*() {
    yield* Sharding.registerScoped
    yield* Sharding.registerEntity(SampleEntity)(pipe(
      RecipientBehaviour.fromFunctionEffect(() => Effect.succeed(state)),
      AtLeastOnce.atLeastOnceRecipientBehaviour
    ))
    const messenger = yield* Sharding.messenger(SampleEntity)
    yield* messenger.sendDiscard("entity1")(new SampleMessage({ id: "a", value: 42 }))
  })

/** One pod with the SQL storage on `table`, on the case's database (the table dropped afterwards). */
const sqlPod = (client: Layer.Layer<SqlClient.SqlClient, unknown>, table: string) =>
  AtLeastOnceStorage.layer({ table }).pipe(
    Layer.provideMerge(shardingLayer),
    Layer.provideMerge(Serialization.json),
    Layer.provideMerge(Layer.scopedDiscard(dropTableOnClose(table))),
    Layer.provideMerge(Layer.orDie(client))
  )

const memoryPod = AtLeastOnceStorage.layerMemory.pipe(
  Layer.provideMerge(shardingLayer),
  Layer.provideMerge(Serialization.json)
)

const rowsOf = (table: string, where: "processed = TRUE" | "processed = FALSE" | "1 = 1" = "1 = 1") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ message_id: string }>`SELECT message_id FROM ${sql(table)} WHERE ${sql.literal(where)} ORDER BY message_id`)

/** An entity answering `Acknowledged` the first `acknowledgeTimes` times it sees a message, then `Processed`. */
const countingAccount = (seen: Map<string, number>, acknowledgeTimes: number) =>
  AtLeastOnce.atLeastOnceRecipientBehaviour(
    RecipientBehaviour.fromFunctionEffect((_entityId, message: Deposit) =>
      Effect.sync(() => {
        const times = (seen.get(message.id) ?? 0) + 1
        seen.set(message.id, times)
        return times <= acknowledgeTimes ? MessageState.Acknowledged : MessageState.Processed(Exit.succeed(message.amount))
      })
    )
  )

for (const db of sqlCases) {
  describe.skipIf(db.skip !== undefined)(`AtLeastOnce [${db.name}]${db.skip ? ` (skipped: ${db.skip})` : ""}`, () => {
    it.scoped("creates the message table, with the 2024 columns, when the layer is built", () => {
      const table = uniqueTable("creation")
      return Effect.gen(function*() {
        expect(yield* columnsOf(table)).toEqual([
          "recipient_name",
          "shard_id",
          "entity_id",
          "message_id",
          "message_body",
          "processed"
        ])
      }).pipe(Effect.provide(sqlPod(db.client, table)))
    })

    it.scoped("stores a message sent to an at-least-once entity", () => {
      const table = uniqueTable("storage")
      return Effect.gen(function*() {
        yield* sendOneAnswering(MessageState.Acknowledged)
        expect(yield* rowsOf(table)).toEqual([{ message_id: "a" }])
      }).pipe(Effect.provide(sqlPod(db.client, table)))
    })

    it.scoped("marks a message processed when the state is Processed", () => {
      const table = uniqueTable("processed")
      return Effect.gen(function*() {
        yield* sendOneAnswering(MessageState.Processed(Exit.void))
        expect(yield* rowsOf(table, "processed = TRUE")).toEqual([{ message_id: "a" }])
      }).pipe(Effect.provide(sqlPod(db.client, table)))
    })

    it.scoped("leaves a message unprocessed when the state is Acknowledged", () => {
      const table = uniqueTable("acknowledged")
      return Effect.gen(function*() {
        yield* sendOneAnswering(MessageState.Acknowledged)
        expect(yield* rowsOf(table, "processed = FALSE")).toEqual([{ message_id: "a" }])
      }).pipe(Effect.provide(sqlPod(db.client, table)))
    })

    it.scoped("does not deliver a message it could not store (2024 delivered it and logged)", () => {
      const table = uniqueTable("nostore")
      return Effect.gen(function*() {
        const seen = new Map<string, number>()
        yield* Sharding.registerScoped
        yield* Sharding.registerEntity(Account)(countingAccount(seen, 0))
        const sql = yield* SqlClient.SqlClient
        yield* sql`DROP TABLE ${sql(table)}`
        const messenger = yield* Sharding.messenger(Account)
        const error = yield* Effect.flip(messenger.send("alice")(new Deposit({ id: "d1", amount: 5 })))
        expect(ShardingException.isExceptionWhileOfferingMessageException(error)).toBe(true)
        expect(seen.size).toBe(0)
      }).pipe(Effect.provide(sqlPod(db.client, table)))
    })

    it.scoped("the sweeper re-sends every pending message of the pod's shards until it is processed", () => {
      const table = uniqueTable("sweep")
      return sweepsEveryPendingMessage.pipe(Effect.provide(sqlPod(db.client, table)))
    })

    it.scoped("an existing 2024 table and its pending rows are used as they are", () => {
      const table = uniqueTable("existing")
      return Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // a table written by the 2024 package: its DDL, and a pending message encoded with Serialization.json
        yield* sql.onDialectOrElse({
          pg: () =>
            sql`CREATE TABLE ${sql(table)} (recipient_name VARCHAR(255) NOT NULL, shard_id INT NOT NULL DEFAULT 0,
              entity_id VARCHAR(255) NOT NULL, message_id VARCHAR(255) NOT NULL, message_body TEXT NOT NULL,
              processed BOOLEAN NOT NULL DEFAULT FALSE,
              CONSTRAINT ${sql(`${table}_pkey`)} PRIMARY KEY (recipient_name, entity_id, message_id))`,
          orElse: () =>
            sql`CREATE TABLE ${sql(table)} (recipient_name VARCHAR(255) NOT NULL, shard_id INT NOT NULL DEFAULT (0),
              entity_id VARCHAR(255) NOT NULL, message_id VARCHAR(255) NOT NULL, message_body CLOB NOT NULL,
              processed BOOLEAN NOT NULL DEFAULT (0),
              CONSTRAINT ${sql(`${table}_pkey`)} PRIMARY KEY (recipient_name, entity_id, message_id))`
        })
        const body = JSON.stringify({ _tag: "Deposit", id: "old-1", amount: 7 })
        yield* sql`INSERT INTO ${sql(table)} (recipient_name, shard_id, entity_id, message_id, message_body)
          VALUES ('Account', 1, 'bob', 'old-1', ${body})`
        const seen = new Map<string, number>()
        yield* Effect.gen(function*() {
          yield* Sharding.registerScoped
          yield* Sharding.registerEntity(Account)(countingAccount(seen, 0))
          yield* AtLeastOnce.runPendingMessageSweeperScoped(Duration.seconds(10))
          yield* TestClock.adjust(Duration.seconds(10))
          const processedRows = Effect.provideService(rowsOf(table, "processed = TRUE"), SqlClient.SqlClient, sql)
          yield* eventually(Effect.orDie(Effect.map(processedRows, (rows) => rows.length === 1)), 100_000)
          expect(seen.get("old-1")).toBe(1)
        }).pipe(
          Effect.provide(
            AtLeastOnceStorage.layer({ table }).pipe(
              Layer.provideMerge(shardingLayer),
              Layer.provideMerge(Serialization.json),
              Layer.provideMerge(Layer.succeed(SqlClient.SqlClient, sql))
            )
          )
        )
      }).pipe(
        Effect.provide(Layer.provideMerge(Layer.scopedDiscard(dropTableOnClose(table)), Layer.orDie(db.client)))
      )
    })
  })
}

// Pending messages on several shards (three on one entity, so several rows per shard) are re-sent until
// the entity answers Processed; the sweep after that sends nothing.
const sweepsEveryPendingMessage = Effect.gen(function*() {
  const seen = new Map<string, number>()
  yield* Sharding.registerScoped
  yield* Sharding.registerEntity(Account)(countingAccount(seen, 1))
  const messenger = yield* Sharding.messenger(Account)
  const sent: Array<string> = []
  for (const [entity, count] of [["alice", 3], ["bob", 1], ["carol", 2]] as const) {
    for (let i = 0; i < count; i++) {
      const id = `${entity}-${i}`
      sent.push(id)
      yield* messenger.sendDiscard(entity)(new Deposit({ id, amount: i }))
    }
  }
  expect([...seen.values()].every((times) => times === 1)).toBe(true)
  const storage = yield* AtLeastOnceStorage.AtLeastOnceStorage
  const shards = yield* Sharding.getAssignedShardIds
  const pendingIds = (envelopes: Iterable<{ messageId: string }>) => Array.from(envelopes, (e) => e.messageId).sort()
  expect(pendingIds(yield* Stream.runCollect(storage.sweepPending(shards)))).toEqual([...sent].sort())
  yield* AtLeastOnce.runPendingMessageSweeperScoped(Duration.seconds(5))
  yield* TestClock.adjust(Duration.seconds(5))
  // Polls the storage (a database round trip on SQL): a message is marked processed after its handler ran.
  yield* eventually(
    Effect.orDie(Effect.map(Stream.runCollect(storage.sweepPending(shards)), (pending) => pending.length === 0)),
    100_000
  )
  expect(sent.map((id) => seen.get(id))).toEqual(sent.map(() => 2))
  yield* TestClock.adjust(Duration.seconds(5))
  yield* settle
  expect(sent.map((id) => seen.get(id))).toEqual(sent.map(() => 2))
})

describe("AtLeastOnce [memory]", () => {
  it.scoped("the sweeper re-sends every pending message of the pod's shards until it is processed", () =>
    sweepsEveryPendingMessage.pipe(Effect.provide(memoryPod)))

  it.scoped("each pod's sweeper re-sends only the pending messages of the shards it holds", () =>
    Effect.gen(function*() {
      const storageContext = yield* Layer.build(Layer.provide(AtLeastOnceStorage.layerMemory, Serialization.json))
      const storage = Context.get(storageContext, AtLeastOnceStorage.AtLeastOnceStorage)
      const seenBy = new Map<string, number>()
      const accountOn = (port: number) =>
        Sharding.registerEntity(Account)(
          AtLeastOnce.atLeastOnceRecipientBehaviour(
            RecipientBehaviour.fromFunctionEffect((_entityId, message: Deposit) =>
              Effect.sync(() => {
                seenBy.set(message.id, port)
                return MessageState.Processed(Exit.succeed(message.amount))
              })
            )
          )
        ).pipe(Effect.provide(storageContext))
      const cluster = yield* makeTestCluster({ numberOfShards: 10, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const shardsOf = (pod: { readonly sharding: Sharding.Sharding }) => pod.sharding.getAssignedShardIds
      const allAssigned = Effect.map(
        cluster.managerInstance()!.getShardAssignments,
        (table) => table.every((row) => row.pod !== null)
      )
      const a = yield* cluster.startPod(1, accountOn(1))
      yield* eventually(allAssigned)
      yield* settle
      const b = yield* cluster.startPod(2, accountOn(2))
      yield* eventually(Effect.map(shardsOf(b), (shards) => HashSet.size(shards) === 5))
      yield* settle
      // Pending messages of 20 entities, stored as a receiving pod would have before a crash.
      const entities = Array.from({ length: 20 }, (_, i) => `e${i}`)
      for (const entity of entities) {
        yield* storage.upsert(Account, a.sharding.getShardId(entity), entity, new Deposit({ id: `m-${entity}`, amount: 1 }))
      }
      const heldByA = yield* shardsOf(a)
      const onA = entities.filter((entity) => [...heldByA].some((s) => s.value === a.sharding.getShardId(entity).value))
      expect(onA.length).toBeGreaterThan(0)
      expect(onA.length).toBeLessThan(entities.length)
      yield* AtLeastOnce.runPendingMessageSweeperScoped(Duration.seconds(1)).pipe(
        Effect.provideService(Sharding.Sharding, a.sharding),
        Effect.provide(storageContext)
      )
      yield* TestClock.adjust(Duration.seconds(1))
      yield* eventually(Effect.sync(() => seenBy.size === onA.length))
      yield* settle
      expect([...seenBy.keys()].sort()).toEqual(onA.map((entity) => `m-${entity}`).sort())
      expect(new Set(seenBy.values())).toEqual(new Set([1]))
      // what is left pending is exactly the other pod's
      const heldByB = yield* shardsOf(b)
      const left = yield* Stream.runCollect(storage.sweepPending(heldByB))
      expect(Array.from(left, (e) => e.messageId).sort()).toEqual(
        entities.filter((entity) => !onA.includes(entity)).map((entity) => `m-${entity}`).sort()
      )
    }))
})
