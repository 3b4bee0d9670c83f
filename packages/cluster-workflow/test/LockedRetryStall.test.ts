/**
 * PostgreSQL, cluster engine: background claims of locked rows and the shard's fence row.
 */
import { DurableExecutionJournalSql, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Duration, Effect, Fiber, Layer, Schema } from "effect"
import { makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { postgresSkipReason, sharedPostgres } from "./utils/journals.js"

const steps = 10

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL cluster engine: background claims of locked rows", () => {
  // Each cluster claim holds its shard's fence row locked (lockFences) for the whole inner claim, whose
  // lock retries sleep ~155 ms inside that transaction; a background claim repeats it every 5 s for as
  // long as the row stays locked, so some dozens of locked rows of one shard hold its fence row most of
  // the time, and every write of the shard's other executions waits behind it.
  it.scopedLive("a shard's other executions are not slowed while some of its rows stay locked", () =>
    Effect.gen(function*() {
      const db = yield* sharedPostgres
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) =>
        order.orderId.startsWith("x")
          ? Effect.as(Workflow.sleep("nap", "1 hour"), order.amount)
          : Effect.gen(function*() {
            for (let i = 0; i < steps; i++) yield* recorded(log, `step${i}`, i, Schema.Number)
            return order.amount
          }))
      const { startPod } = yield* makeEngineCluster(db, workflow, { shardCheckInterval: "1 second" })
      const pod = yield* startPod(1)
      yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
      const shardOf = (id: string) => pod.sharding.getShardId(`Order/${id}`).value
      const shard = shardOf("y0")
      const sameShard = (prefix: string, count: number) => {
        const ids: Array<string> = []
        for (let n = 0; ids.length < count; n++) if (shardOf(`${prefix}${n}`) === shard) ids.push(`${prefix}${n}`)
        return ids
      }
      const xs = sameShard("x", 30)
      const [y0, y1] = sameShard("y", 2) as [string, string]
      // Started and run to its end, within `bound` (a stalled shard takes 17-20 s; an idle one ~0.1 s).
      const runWithin = (id: string, bound: Duration.DurationInput) =>
        Effect.gen(function*() {
          yield* pod.engine.start(new Order({ orderId: id, amount: 1 }))
          yield* until(Effect.map(pod.engine.status(id), (status) => status._tag === "Completed"), "60 seconds")
        }).pipe(Effect.timeoutFail({ duration: bound, onTimeout: () => new Error(`${id} did not complete within the bound`) }))
      yield* Effect.forEach(xs, (x) => pod.engine.start(new Order({ orderId: x, amount: 1 })), { concurrency: 8 })
      yield* until(Effect.map(
        Effect.forEach(xs, (x) => pod.engine.status(x)),
        (all) => all.every((status) => status._tag === "Suspended")
      ))
      yield* runWithin(y0, "30 seconds")
      // Another session locks the x rows and leaves its transaction open.
      const other = Context.get(yield* Layer.build(db.journal()), SqlClient.SqlClient)
      const E = other((yield* DurableExecutionJournalSql.tableNames(db.prefix)).executions)
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${E} WHERE execution_id IN ${other.in(xs)} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      // The x executions are started again (joined: each claim meets its locked row, and is claimed again
      // in the background)
      yield* Effect.forEach(xs, (x) => pod.engine.start(new Order({ orderId: x, amount: 1 })), { concurrency: 8 }).pipe(
        Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("the starts did not return within 15 s") })
      )
      // Meanwhile another execution of the shard runs its 10 steps without waiting behind those claims.
      yield* runWithin(y1, "5 seconds")
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      // Once the lock ends, the x executions are claimed again in the background (and suspend again).
      yield* until(Effect.map(
        Effect.forEach(xs, (x) => pod.engine.status(x)),
        (all) => all.every((status) => status._tag === "Suspended")
      ))
    }), 120_000)
})
