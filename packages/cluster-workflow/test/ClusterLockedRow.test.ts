/**
 * PostgreSQL, workflows on the cluster: an execution's row locked by another session (a process paused
 * mid-transaction, an admin's open transaction) must not stop the pod's other executions. The in-process
 * engine's claim skips a locked row (LockedRow test); the cluster engine's claim first clears a previous
 * owner's claim with a plain UPDATE, which waits for the row's lock while its transaction holds the
 * shard's fence row locked, so every write of that shard (and the engine's one group committer behind it)
 * waited as long as the other session kept its transaction open.
 */
import { DurableExecutionJournalSql, Workflow } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Either, Fiber, Layer, Schema } from "effect"
import { makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { postgresSkipReason, sharedPostgres } from "./utils/journals.js"

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL cluster engine: a row locked by another session", () => {
  it.scopedLive("an execution of the same shard goes on while a due execution's row is locked", () =>
    Effect.gen(function*() {
      const db = yield* sharedPostgres
      const log = new RunLog()
      const workflow = Workflow.make(Order, (order) =>
        order.orderId === "x"
          ? Effect.as(Workflow.sleep("nap", "1 second"), order.amount)
          : recorded(log, "charge", order.amount, Schema.Number))
      const { startPod } = yield* makeEngineCluster(db, workflow, { shardCheckInterval: "1 second" })
      const pod = yield* startPod(1)
      yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
      const shardOf = (id: string) => pod.sharding.getShardId(`Order/${id}`).value
      let n = 0
      while (shardOf(`y${n}`) !== shardOf("x")) n++
      const y = `y${n}`
      yield* pod.engine.start(new Order({ orderId: "x", amount: 1 }))
      yield* until(Effect.map(pod.engine.status("x"), (status) => status._tag === "Suspended"))
      // Another session: x's row still names a previous pod's engine as its claim owner, and the session
      // keeps x's row locked in an open transaction.
      const other = Context.get(yield* Layer.build(db.journal()), SqlClient.SqlClient)
      const E = other((yield* DurableExecutionJournalSql.tableNames(db.prefix)).executions)
      yield* other`UPDATE ${E} SET claim_owner = 'a previous pod' WHERE execution_id = 'x'`
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${E} WHERE execution_id = 'x' FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      // x falls due: the engine's claim of x meets the lock (a lock request waits for it; or, skipping
      // locked rows, none does: then half a second past x's deadline)
      const wakeAt = Number((yield* other<{ wake_at: unknown }>`SELECT wake_at FROM ${E} WHERE execution_id = 'x'`)[0]?.wake_at)
      yield* until(Effect.map(
        other<{ waiting: unknown }>`SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted`,
        (rows) => Number(rows[0]?.waiting) > 0 || Date.now() > wakeAt + 500
      ))
      // y, in x's shard, starts and completes while x's row is locked
      const done = yield* Effect.either(Effect.timeout(
        Effect.zipRight(
          pod.engine.start(new Order({ orderId: y, amount: 2 })),
          until(Effect.map(pod.engine.status(y), (status) => status._tag === "Completed"))
        ),
        "5 seconds"
      ))
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      expect(Either.isRight(done)).toBe(true)
      yield* until(Effect.map(pod.engine.status("x"), (status) => status._tag === "Completed"))
    }), 60_000)
})
