/**
 * Entities fence their own writes by the epoch they run under (FencedWrite), on a SQLite file and on
 * PostgreSQL: the cluster's own tables (StorageSql) decide whether the epoch is still current.
 */
import { RecipientBehaviourContext, ShardId, Sharding } from "@effect-cluster/cluster"
import * as FencedWrite from "@effect-cluster/cluster/FencedWrite"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option, Ref } from "effect"
import { eventually, makeTestCluster } from "./utils/cluster.js"
import { Counter, counterBehaviour, freshId, Increment } from "./utils/counter.js"
import { dropTableOnClose, sqlCases, uniqueTable } from "./utils/sql.js"

const dropStorageTables = (prefix: string) =>
  Effect.forEach(["pods", "shards", "manager_lease", "migrations"], (table) => dropTableOnClose(`${prefix}_${table}`))

const setUp = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const prefix = uniqueTable("fw")
  yield* dropStorageTables(prefix)
  const storage = yield* StorageSql.make({ prefix })
  const notes = `${prefix}_notes`
  yield* dropTableOnClose(notes)
  yield* sql`CREATE TABLE ${sql(notes)} (entity_id TEXT NOT NULL, note TEXT NOT NULL)`
  const fence = yield* FencedWrite.make({ prefix })
  const note = (entityId: string, text: string) =>
    sql`INSERT INTO ${sql(notes)} (entity_id, note) VALUES (${entityId}, ${text})`
  const written = Effect.map(
    sql<{ note: string }>`SELECT note FROM ${sql(notes)} ORDER BY note`,
    (rows) => rows.map((row) => row.note)
  )
  return { prefix, storage, fence, note, written }
})

for (const sqlCase of sqlCases) {
  describe.skipIf(sqlCase.skip !== undefined)(`FencedWrite [${sqlCase.name}]`, () => {
    it.live("a write under the shard's current epoch commits; once the epoch moved on, it is rejected and writes nothing", () =>
      Effect.gen(function*() {
        const { fence, note, storage, written } = yield* setUp
        yield* storage.saveEpochs(HashMap.make([ShardId.make(3), 1] as const))
        yield* note("e", "under epoch 1").pipe(fence.at(3, 1))
        // The shard moved: the manager stored epoch 2.
        yield* storage.saveEpochs(HashMap.make([ShardId.make(3), 2] as const))
        const stale = yield* Effect.flip(fence.at(note("e", "stale under epoch 1"), 3, 1))
        expect(stale).toEqual(new FencedWrite.StaleEpochError({ shardId: 3, epoch: 1 }))
        // The whole transaction is rolled back, including writes made before the fence's verdict is known.
        expect(yield* written).toEqual(["under epoch 1"])
        yield* note("e", "under epoch 2").pipe(fence.at(3, 2))
        expect(yield* written).toEqual(["under epoch 1", "under epoch 2"])
        // A shard never stored, or epoch 0 (no epoch known), is never current.
        expect((yield* Effect.flip(fence.at(note("e", "x"), 4, 0)))._tag).toBe("@effect-cluster/cluster/StaleEpochError")
        expect((yield* Effect.flip(fence.at(note("e", "x"), 5, 1)))._tag).toBe("@effect-cluster/cluster/StaleEpochError")
      }).pipe(Effect.scoped, Effect.provide(sqlCase.client), Effect.orDie))

    it.live("an entity runs under its shard's stored epoch; after the shard moved to another pod, its old instance's write is rejected", () =>
      Effect.gen(function*() {
        const { fence, note, storage, written } = yield* setUp
        const cluster = yield* makeTestCluster({ numberOfShards: 4, storage })
        yield* cluster.startManager
        const contexts = yield* Ref.make(new Map<string, RecipientBehaviourContext.RecipientBehaviourContext>())
        const register = Sharding.registerEntity(Counter)(counterBehaviour({
          // The counter's start hook sees the instance's context (its type hides it).
          onStart: (entityId) =>
            Effect.flatMap(RecipientBehaviourContext.RecipientBehaviourContext, (context) =>
              Ref.update(contexts, (all) => new Map(all).set(entityId, context))) as Effect.Effect<void>
        }))
        const podA = yield* cluster.startPod(1, register)
        yield* podA.sharding.messenger(Counter).send("e1")(new Increment({ messageId: freshId(), by: 1 }))
        const contextA = (yield* Ref.get(contexts)).get("e1")!
        const shard = contextA.shardId.value
        const stored = Option.getOrThrow(HashMap.get(yield* storage.getEpochs, contextA.shardId))
        expect(contextA.epoch).toBe(stored)
        expect(yield* RecipientBehaviourContext.epoch.pipe(
          Effect.provideService(RecipientBehaviourContext.RecipientBehaviourContext, contextA)
        )).toBe(stored)
        // While pod A holds the shard, the instance's writes commit.
        yield* fence.write(note("e1", "a")).pipe(
          Effect.provideService(RecipientBehaviourContext.RecipientBehaviourContext, contextA)
        )
        // Pod A leaves, pod B gets its shards at new epochs and starts e1 again.
        yield* podA.leave
        const podB = yield* cluster.startPod(2, register)
        yield* eventually(Effect.orDie(Effect.map(storage.getEpochs, (epochs) =>
          Option.getOrElse(HashMap.get(epochs, contextA.shardId), () => 0) > stored)))
        yield* podB.sharding.messenger(Counter).send("e1")(new Increment({ messageId: freshId(), by: 1 }))
        const contextB = (yield* Ref.get(contexts)).get("e1")!
        expect(contextB.epoch).toBeGreaterThan(contextA.epoch!)
        // A's instance, had it lived on (a paused process), cannot commit; B's can.
        const stale = yield* Effect.flip(FencedWrite.write(note("e1", "a, stale")).pipe(
          Effect.provideService(RecipientBehaviourContext.RecipientBehaviourContext, contextA),
          Effect.provideService(FencedWrite.FencedWrite, fence)
        ))
        expect(stale).toEqual(new FencedWrite.StaleEpochError({ shardId: shard, epoch: contextA.epoch! }))
        yield* FencedWrite.write(note("e1", "b")).pipe(
          Effect.provideService(RecipientBehaviourContext.RecipientBehaviourContext, contextB),
          Effect.provideService(FencedWrite.FencedWrite, fence)
        )
        expect(yield* written).toEqual(["a", "b"])
      }).pipe(Effect.scoped, Effect.provide(sqlCase.client), Effect.orDie), { timeout: 60_000 })
  })
}
