/**
 * Attacks on the background claim of a locked row (`claimOrRetryLater`, rowLocked.ts), PostgreSQL.
 */
import { Activity, DurableExecutionJournalSql, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Fiber, Layer, Logger, Schema } from "effect"
import { makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order } from "./utils/fixtures.js"
import { postgresSkipReason, sharedPostgres } from "./utils/journals.js"

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL cluster engine: a shard taken over while one row is locked", () => {
  // The new owner of a shard resumes its running executions one after another (takeShard, with
  // `engine.claimAndLaunch`): the claim of one whose row is locked past the claim's retries failed the
  // whole takeover ("could not take over a shard's executions"), and the shard's executions after it were
  // never resumed (the shard counts as taken; the cluster engine has no orphan look).
  it.scopedLive("the other running executions of a shard taken over resume though one's row is locked", () =>
    Effect.gen(function*() {
      const db = yield* sharedPostgres
      const gate = yield* Deferred.make<void>()
      const started = new Set<string>()
      const workflow = Workflow.make(Order, (order) =>
        Effect.as(
          Activity.make("work", Schema.Void, Schema.String)(
            Effect.zipRight(Effect.sync(() => started.add(order.orderId)), Deferred.await(gate))
          ),
          order.amount
        ))
      const { startPod } = yield* makeEngineCluster(db, workflow, { shardCheckInterval: "1 second" })
      const pod1 = yield* startPod(1)
      yield* until(Effect.map(served(pod1), (shards) => shards.length === 30))
      const shardOf = (id: string) => pod1.sharding.getShardId(`Order/${id}`).value
      const ids: Array<string> = []
      for (let n = 0; ids.length < 4; n++) if (shardOf(`r${n}`) === shardOf("r0")) ids.push(`r${n}`)
      // r-executions of one shard run on pod 1 (created in this order: the takeover resumes them so)
      for (const id of ids) {
        yield* pod1.engine.start(new Order({ orderId: id, amount: 1 }))
        yield* until(Effect.sync(() => started.has(id)))
      }
      // pod 1 leaves while they run: they are left running, their claims released
      yield* pod1.leave
      yield* Deferred.succeed(gate, undefined)
      // another session locks the first one's row and leaves its transaction open
      const other = Context.get(yield* Layer.build(db.journal()), SqlClient.SqlClient)
      const E = other((yield* DurableExecutionJournalSql.tableNames(db.prefix)).executions)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${E} WHERE execution_id = ${ids[0]!} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      // pod 2 takes every shard over
      const pod2 = yield* startPod(2)
      yield* until(Effect.map(served(pod2), (shards) => shards.length === 30))
      const completed = (id: string) => Effect.map(pod2.engine.status(id), (status) => status._tag === "Completed")
      const others = yield* Effect.exit(until(
        Effect.map(Effect.forEach(ids.slice(1), completed), (all) => all.every(Boolean)),
        "15 seconds"
      ))
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      expect(others._tag).toBe("Success")
      expect(warnings.filter((w) => w.includes("could not take over"))).toEqual([])
      // and the locked one once its lock ends
      yield* until(completed(ids[0]!), "15 seconds")
    }).pipe(Effect.provide(Logger.add(warningLogger))), 90_000)
})

const warnings: Array<string> = []
const warningLogger = Logger.make(({ logLevel, message }) => {
  if (logLevel._tag === "Warning") warnings.push(Array.isArray(message) ? message.join(" ") : String(message))
})
