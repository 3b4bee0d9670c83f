/**
 * A lapse of the pod's lease: on a starved machine a pod's lease runs out by its own clock and is renewed
 * before its lease watchdog drops its shards. Meanwhile the pod serves none of them
 * (`Sharding.servedShardEpochs` lacks them), then serves them again at the same epochs, and it announces
 * neither (`servedShardEpochsChanges` follows the shards it holds, which did not change). What the engine
 * decided on the lapsed view must not stay decided: a timer that read no deadline, a running execution whose
 * write was refused, a wake-up whose claim was refused. Each test makes the pod report a lapse at a chosen
 * moment (its real `servedShardEpochs`, emptied while `lapse.on`, as the starved pod's own clock empties it)
 * and ends it silently; the engine's periodic shard check is off (an hour), so only the engine's own
 * handling of the lapse can resume the execution. A write made during the lapse waits for its end (up to
 * 5 s) rather than being refused, which would stop the execution and run the body in flight again. A
 * transactional activity's own commit (in its transaction, not through the group committer) is refused
 * during a lapse: its transaction rolls back with the body's own rows and the execution is claimed back.
 */
import type { Sharding } from "@effect-cluster/cluster"
import { Activity, DurableDeferred, Workflow } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Schema } from "effect"
import { makeEngineCluster, served, until } from "./utils/engineCluster.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { sharedSqlite } from "./utils/journals.js"

/**
 * The pod's served shards, empty while `on` (each read then counted in `reads`); with `only`, only that
 * shard lapses (its lease in the database not renewed, the others' renewed).
 */
class Lapse {
  on = false
  reads = 0
  only: number | undefined = undefined
  readonly view = (sharding: Sharding.Sharding): Sharding.Sharding => ({
    ...sharding,
    servedShardEpochs: Effect.map(sharding.servedShardEpochs, (shards) => {
      if (!this.on) return shards
      this.reads++
      if (this.only === undefined) return new Map<number, number>()
      const rest = new Map(shards)
      rest.delete(this.only)
      return rest
    })
  })
  begin() {
    this.on = true
    this.reads = 0
  }
}

const Approval = DurableDeferred.make("approval", { success: Schema.Boolean })

/** One pod serving every shard, its engine's periodic shard check off, its view of its shards lapsing. */
const onePod = (workflow: Workflow.Workflow<Order, SqlClient.SqlClient>, lapse: Lapse) =>
  Effect.map(onePodWithSharding(workflow, lapse), (pod) => pod.engine)

/** `onePod`, with the pod's sharding and the shared database (a SQLite file). */
const onePodWithSharding = (workflow: Workflow.Workflow<Order, SqlClient.SqlClient>, lapse: Lapse) =>
  Effect.gen(function*() {
    const db = yield* sharedSqlite
    const { startPod } = yield* makeEngineCluster(db, workflow, {
      shardCheckInterval: "1 hour",
      podView: lapse.view
    })
    const pod = yield* startPod(1)
    yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
    return { ...pod, db }
  })

const statusIs = (engine: { status: (id: string) => Effect.Effect<{ readonly _tag: string }, any> }, id: string, tag: string) =>
  Effect.map(engine.status(id), (status) => status._tag === tag)

/** (a bound that detects the stall: without the engine's handling, nothing resumes it for an hour) */
const resumes = "10 seconds"

it.scopedLive("a timer that fell due during a lapse of the pod's lease fires once the lease is renewed", () =>
  Effect.gen(function*() {
    const log = new RunLog()
    const lapse = new Lapse()
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        yield* recorded(log, "before", order.amount, Schema.Number)
        yield* Workflow.sleep("nap", "300 millis")
        return yield* recorded(log, "after", order.amount, Schema.Number)
      }))
    const engine = yield* onePod(workflow, lapse)
    yield* engine.start(new Order({ orderId: "t1", amount: 1 }))
    yield* until(statusIs(engine, "t1", "Suspended"))
    lapse.begin()
    // The timer fires at the deadline during the lapse: it finds nothing due (dueTimers) and no deadline to
    // wait for (nextWakeAt), both read on the lapsed view.
    yield* until(Effect.sync(() => lapse.reads >= 2))
    lapse.on = false
    yield* until(statusIs(engine, "t1", "Completed"), resumes)
    expect(log.count("after")).toBe(1)
  }))

it.scopedLive("a write made during a lapse waits for the lease's renewal: the execution goes on, its body ran once", () =>
  Effect.gen(function*() {
    const log = new RunLog()
    const lapse = new Lapse()
    const entered = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const body = Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(gate))
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        yield* recorded(log, "charge", order.amount, Schema.Number, { body })
        return order.amount
      }))
    const engine = yield* onePod(workflow, lapse)
    yield* engine.start(new Order({ orderId: "r1", amount: 2 }))
    yield* Deferred.await(entered)
    lapse.begin()
    // the charge's result is written while the pod serves no shard (it still holds them)
    yield* Deferred.succeed(gate, undefined)
    yield* until(Effect.sync(() => lapse.reads >= 1))
    expect((yield* engine.status("r1"))._tag).toBe("Running")
    lapse.on = false
    yield* until(statusIs(engine, "r1", "Completed"), resumes)
    expect(log.runs).toEqual([{ id: "charge", attempt: 0 }])
  }))

it.scopedLive("a signal whose wake-up came during a lapse is received once the lease is renewed", () =>
  Effect.gen(function*() {
    const lapse = new Lapse()
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        const approved = yield* DurableDeferred.await(Approval)
        return approved ? order.amount : 0
      }))
    const engine = yield* onePod(workflow, lapse)
    yield* engine.start(new Order({ orderId: "s1", amount: 3 }))
    yield* until(statusIs(engine, "s1", "Suspended"))
    lapse.begin()
    yield* engine.signal("s1", Approval, Exit.succeed(true))
    // the wake-up's claim read the lapsed view and was refused
    yield* until(Effect.sync(() => lapse.reads >= 1))
    lapse.on = false
    yield* until(statusIs(engine, "s1", "Completed"), resumes)
    expect(yield* engine.result("s1")).toEqual(Exit.succeed(3))
  }))

// A lapse of one shard (its lease in the database not renewed, the pod's other shards' renewed) must not
// hold up the executions of the shards still served: the write of the lapsed shard's execution waits (up to
// 5 s) in the engine's one group committer, and every later write of the engine (another shard's start, its
// results) queued behind it waited as long.
it.scopedLive("a write waiting for one shard's lapse does not hold up the executions of the shards still served", () =>
  Effect.gen(function*() {
    const log = new RunLog()
    const lapse = new Lapse()
    const entered = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const workflow = Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        const body = order.orderId === "a" ? Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(gate)) : Effect.void
        yield* recorded(log, `charge ${order.orderId}`, order.amount, Schema.Number, { body })
        return order.amount
      }))
    const { engine, sharding } = yield* onePodWithSharding(workflow, lapse)
    const shardOf = (id: string) => sharding.getShardId(`Order/${id}`).value
    let other = 0
    while (shardOf(`b${other}`) === shardOf("a")) other++
    const b = `b${other}`
    yield* engine.start(new Order({ orderId: "a", amount: 1 }))
    yield* Deferred.await(entered)
    lapse.only = shardOf("a")
    lapse.begin()
    // a's result is written while its shard lapses: the write waits
    yield* Deferred.succeed(gate, undefined)
    yield* until(Effect.sync(() => lapse.reads >= 3))
    expect((yield* engine.status("a"))._tag).toBe("Running")
    // b's shard is served all along: b starts and completes at once
    const done = yield* Effect.either(Effect.timeout(
      Effect.zipRight(engine.start(new Order({ orderId: b, amount: 2 })), until(statusIs(engine, b, "Completed"))),
      "2 seconds"
    ))
    lapse.on = false
    expect(done._tag).toBe("Right")
    yield* until(statusIs(engine, "a", "Completed"), resumes)
    expect(log.count("charge a")).toBe(1)
  }))

// A transactional activity commits its result in its own transaction (with the body's own SQL writes), not
// through the group committer: during a lapse that commit is refused, the transaction rolls back with the
// body's row and the execution stops; once the lease is renewed the engine claims it back and the body's row
// commits with the result, once.
it.scopedLive("a transactional activity during a lapse rolls back with its body's rows; once the lease is renewed it commits once", () =>
  Effect.gen(function*() {
    const lapse = new Lapse()
    const runs: Array<number> = []
    const entered = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const ledger = (id: string, amount: number, table: string) =>
      Activity.make("ledger", Schema.Number, Schema.String)(
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          runs.push(yield* Activity.currentAttempt)
          yield* Effect.orDie(sql`INSERT INTO ${sql(table)} (execution_id, amount) VALUES (${id}, ${amount})`)
          yield* Deferred.succeed(entered, undefined)
          yield* Deferred.await(gate)
          return amount
        })
      ).pipe(Activity.transactional)
    let table = ""
    const workflow = Workflow.make(Order, (order) => ledger(order.orderId, order.amount, table))
    const { db, engine } = yield* onePodWithSharding(workflow, lapse)
    table = `${db.prefix}_ledger`
    // another connection to the file: it sees only committed rows
    const sql = Context.get(yield* Layer.build(db.journal()), SqlClient.SqlClient)
    yield* sql`CREATE TABLE ${sql(table)} (execution_id TEXT NOT NULL, amount INTEGER NOT NULL)`
    const rows = Effect.map(
      sql<{ n: number }>`SELECT COUNT(*) AS n FROM ${sql(table)} WHERE execution_id = ${"x1"}`,
      (result) => Number(result[0]!.n)
    )
    yield* engine.start(new Order({ orderId: "x1", amount: 4 }))
    yield* Deferred.await(entered)
    lapse.begin()
    // the ledger's result commits in its transaction while the pod serves no shard (it still holds them)
    yield* Deferred.succeed(gate, undefined)
    yield* until(Effect.map(engine.liveExecutions, (n) => n === 0))
    expect(lapse.reads).toBeGreaterThanOrEqual(1)
    expect(runs.length).toBe(1)
    expect(yield* rows).toBe(0)
    expect((yield* engine.status("x1"))._tag).toBe("Running")
    lapse.on = false
    yield* until(statusIs(engine, "x1", "Completed"), resumes)
    expect(yield* engine.result("x1")).toEqual(Exit.succeed(4))
    expect(yield* rows).toBe(1)
    expect(runs.length).toBe(2)
  }))
