/**
 * Workflows on the cluster: several pods in one process over the in-process transport, on a SQLite file
 * and on PostgreSQL. Executions are routed to the owner of their shard, resumed by the new owner when a
 * shard moves (a pod leaving, a pod crashing), sleeping and signal-waiting ones included, and a stale
 * owner's writes are fenced by the shard epoch. Live clock: pods, leases, the journal and the engine's
 * timers run for real, with short leases.
 */
import { Message, type Sharding } from "@effect-cluster/cluster"
import type { WorkflowEngine as WorkflowEngineNs } from "@effect-cluster/cluster-workflow"
import { Activity, DurableDeferred, Workflow } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Schema } from "effect"
import { clusterDatabases, makeEngineCluster, PodName, served, until } from "./utils/engineCluster.js"

/** The engine's periodic shard check once an hour: these tests see only what shard changes announce. */
const engineOptions = { shardCheckInterval: "1 hour" } as const

/** Every run of an activity body: which execution step, on which pod, in which epoch of its shard there. */
interface SideEffect {
  readonly id: string
  readonly pod: number
  readonly attempt: number
  /** The epoch at which that pod held the execution's shard when the body ran (undefined: not held). */
  readonly epoch: number | undefined
}

/** The pods' sharding services by port, filled as pods start (for the epochs of the side effects). */
type Shardings = Map<number, Sharding.Sharding>

class Payment extends Message.TaggedMessage<Payment>()(
  "Payment",
  Schema.String,
  Schema.String,
  { id: Schema.String, amount: Schema.Number, wait: Schema.Literal("none", "sleep", "signal") },
  (payment) => payment.id
) {}

const Approval = DurableDeferred.make("approval", { success: Schema.Boolean })

const makeWorkflow = (effects: Array<SideEffect>, gate?: Deferred.Deferred<void>, shardings: Shardings = new Map()) => {
  const record = <A>(id: string, value: A, schema: Schema.Schema<A, any>) =>
    Activity.make(id, schema, Schema.String)(
      Effect.gen(function*() {
        const pod = yield* PodName
        const sharding = shardings.get(pod)
        const executionId = id.replace(/^(amount|charge)-/, "")
        const epoch = sharding === undefined
          ? undefined
          : (yield* sharding.servedShardEpochs).get(sharding.getShardId(`Payment/${executionId}`).value)
        effects.push({ id, pod, attempt: yield* Activity.currentAttempt, epoch })
        if (gate !== undefined && id.startsWith("charge")) yield* Deferred.await(gate)
        return value
      })
    )
  return Workflow.make(Payment, (payment) =>
    Effect.gen(function*() {
      const amount = yield* record(`amount-${payment.id}`, payment.amount, Schema.Number)
      if (payment.wait === "sleep") yield* Workflow.sleep("nap", "1500 millis")
      if (payment.wait === "signal") {
        const approved = yield* DurableDeferred.await(Approval)
        if (!approved) return yield* Effect.fail("declined")
      }
      yield* record(`charge-${payment.id}`, undefined, Schema.Void)
      return `paid ${payment.id} ${amount}`
    }))
}

const suspendedCount = (engine: WorkflowEngineNs.WorkflowEngine<Payment>) =>
  Effect.map(engine.list({ status: "suspended", limit: 1000 }), (page) => page.executions.length)

const countBy = (effects: ReadonlyArray<SideEffect>) => {
  const counts = new Map<string, number>()
  for (const effect of effects) counts.set(effect.id, (counts.get(effect.id) ?? 0) + 1)
  return counts
}

/**
 * Every activity body ran once, except a body cut off before its result was recorded (the engine stopping
 * records nothing of it, or its write is fenced), which then runs again:
 * - once at most after a run on the pod that went away (`gone`: kills + 1; the next run is usually on a new
 *   owner, and can be on that pod itself before it is gone);
 * - after a run on a pod that stays, only if the execution's shard moved in between (the manager
 *   rebalancing after `gone` left, or that pod's lease lapsing on a starved machine): the next run is in a
 *   later epoch of the shard. Two runs under one owner (one epoch) on a staying pod would be a single-owner
 *   violation or a recorded step run again.
 * Returns the executions run again after their shard moved away from a staying pod (for the report).
 */
const expectRepeatsOnlyAfterCuts = (effects: ReadonlyArray<SideEffect>, gone: number) => {
  const moved: Array<string> = []
  for (const [id, n] of countBy(effects)) {
    if (n === 1) continue
    const runs = effects.filter((effect) => effect.id === id)
    const describe = `${id} ran ${n} times: ${JSON.stringify(runs)}`
    let afterGone = 0
    for (let i = 1; i < runs.length; i++) {
      const previous = runs[i - 1]!
      if (previous.pod === gone) {
        afterGone++
        continue
      }
      // (the previous run may have started just after its pod let the shard go: no epoch there)
      expect(runs[i]!.epoch, describe).toBeDefined()
      if (previous.epoch !== undefined) expect(runs[i]!.epoch!, describe).toBeGreaterThan(previous.epoch)
      moved.push(id)
    }
    expect(afterGone, describe).toBeLessThanOrEqual(1)
  }
  return moved
}

for (const database of clusterDatabases) {
  describe.skipIf(database.skip !== undefined)(`ClusterWorkflowEngine on ${database.name}`, () => {
    it.scopedLive("routes each execution to its shard's owner; any pod starts and awaits any execution", () =>
      Effect.gen(function*() {
        const effects: Array<SideEffect> = []
        const db = yield* database.make
        const { startPod } = yield* makeEngineCluster(db, makeWorkflow(effects), engineOptions)
        const pods = [yield* startPod(1), yield* startPod(2), yield* startPod(3)]
        yield* until(Effect.map(Effect.forEach(pods, served), (all) => all.every((shards) => shards.length === 30 / pods.length)))
        const results = yield* Effect.forEach(
          Array.from({ length: 30 }, (_, i) => i),
          (i) => pods[i % 3]!.engine.send(new Payment({ id: `p${i}`, amount: i, wait: "none" })),
          { concurrency: 10 }
        )
        expect(results).toEqual(Array.from({ length: 30 }, (_, i) => `paid p${i} ${i}`))
        const counts = countBy(effects)
        expect(Array.from(counts.values()).every((n) => n === 1)).toBe(true)
        expect(counts.size).toBe(60)
        // Each execution ran on the pod serving its shard, and the three pods shared the work.
        const sharding = pods[0]!.sharding
        for (const effect of effects) {
          const id = effect.id.replace(/^(amount|charge)-/, "")
          const shard = sharding.getShardId(`Payment/${id}`).value
          const owner = pods.find((pod) => Effect.runSync(pod.sharding.servedShardEpochs).has(shard))
          expect(owner?.port).toBe(effect.pod)
        }
        expect(new Set(effects.map((effect) => effect.pod))).toEqual(new Set([1, 2, 3]))
        // A send of a finished execution returns its stored result, from any pod, running nothing.
        expect(yield* pods[2]!.engine.send(new Payment({ id: "p0", amount: 0, wait: "none" }))).toBe("paid p0 0")
        expect(effects.length).toBe(60)
      }), 60_000)

    it.scopedLive("a pod leaving: its sleeping and signal-waiting executions resume on the new owners; results recorded once", () =>
      Effect.gen(function*() {
        const effects: Array<SideEffect> = []
        const db = yield* database.make
        const shardings: Shardings = new Map()
        const { startPod } = yield* makeEngineCluster(db, makeWorkflow(effects, undefined, shardings), engineOptions)
        const pods = [yield* startPod(1), yield* startPod(2), yield* startPod(3)]
        for (const pod of pods) shardings.set(pod.port, pod.sharding)
        yield* until(Effect.map(Effect.forEach(pods, served), (all) => all.every((shards) => shards.length === 30 / pods.length)))
        const leaving = pods[2]!
        const leavingShards = new Set(yield* served(leaving))
        for (let i = 0; i < 24; i++) {
          yield* pods[0]!.engine.start(new Payment({ id: `q${i}`, amount: i, wait: i % 2 === 0 ? "signal" : "sleep" }))
        }
        const onLeaving = Array.from({ length: 24 }, (_, i) => `q${i}`).filter((id) =>
          leavingShards.has(leaving.sharding.getShardId(`Payment/${id}`).value)
        )
        expect(onLeaving.length).toBeGreaterThan(0)
        // Every signal-waiting execution has suspended before the pod leaves.
        yield* until(Effect.map(
          Effect.forEach(Array.from({ length: 12 }, (_, i) => `q${2 * i}`), (id) => pods[0]!.engine.status(id)),
          (states) => states.every((state) => state._tag === "Suspended")
        ))
        yield* leaving.leave
        // Charges run on the leaving pod until its engine has stopped (a nap can end while it leaves), so
        // this is read once it has left.
        const chargedThere = new Set(
          effects.filter((effect) => effect.id.startsWith("charge-") && effect.pod === 3).map((e) => e.id)
        )
        for (let i = 0; i < 24; i += 2) yield* pods[1]!.engine.signal(`q${i}`, Approval, Exit.succeed(true))
        const results = yield* Effect.forEach(
          Array.from({ length: 24 }, (_, i) => i),
          (i) =>
            pods[i % 2]!.engine.result(`q${i}`, { timeout: "30 seconds" }).pipe(
              Effect.tapError(() =>
                Effect.flatMap(pods[0]!.engine.status(`q${i}`), (state) =>
                  Effect.sync(() => console.error(`q${i}`, JSON.stringify(state), JSON.stringify(effects))))
              )
            ),
          { concurrency: "unbounded" }
        )
        expect(results).toEqual(Array.from({ length: 24 }, (_, i) => Exit.succeed(`paid q${i} ${i}`)))
        const moved = expectRepeatsOnlyAfterCuts(effects, 3)
        if (moved.length > 0) console.log(`[${database.name} leaving] run again after their shard moved: ${moved}`)
        // The charges of the leaving pod's executions still waiting when it left ran on the pods that took
        // its shards over.
        const takenOver = onLeaving.filter((id) => !chargedThere.has(`charge-${id}`))
        expect(takenOver.length).toBeGreaterThan(0)
        for (const id of takenOver) {
          const runs = effects.filter((effect) => effect.id === `charge-${id}`)
          expect(runs.length, JSON.stringify(runs)).toBeGreaterThan(0)
          expect(runs.every((run) => run.pod !== 3), JSON.stringify(runs)).toBe(true)
        }
        expect(yield* suspendedCount(pods[0]!.engine)).toBe(0)
      }), 90_000)

    it.scopedLive("a pod crashing: the new owner resumes its executions, their timers fire there, and signals stored while no pod served them arrive", () =>
      Effect.gen(function*() {
        const effects: Array<SideEffect> = []
        const db = yield* database.make
        const shardings: Shardings = new Map()
        const { startPod } = yield* makeEngineCluster(db, makeWorkflow(effects, undefined, shardings), engineOptions)
        const pods = [yield* startPod(1), yield* startPod(2)]
        for (const pod of pods) shardings.set(pod.port, pod.sharding)
        yield* until(Effect.map(Effect.forEach(pods, served), (all) => all.every((shards) => shards.length === 30 / pods.length)))
        const crashing = pods[1]!
        const crashingShards = new Set(yield* served(crashing))
        yield* Effect.forEach(
          Array.from({ length: 16 }, (_, i) => i),
          (i) => pods[0]!.engine.start(new Payment({ id: `r${i}`, amount: i, wait: "sleep" })),
          { concurrency: "unbounded" }
        )
        const onCrashing = Array.from({ length: 16 }, (_, i) => `r${i}`).filter((id) =>
          crashingShards.has(crashing.sharding.getShardId(`Payment/${id}`).value)
        )
        expect(onCrashing.length).toBeGreaterThan(0)
        // Signal-waiting executions on the crashing pod, suspended before it crashes.
        const waiting = Array.from({ length: 40 }, (_, i) => `w${i}`).filter((id) =>
          crashingShards.has(crashing.sharding.getShardId(`Payment/${id}`).value)
        ).slice(0, 4)
        for (const id of waiting) yield* pods[0]!.engine.start(new Payment({ id, amount: 1, wait: "signal" }))
        yield* until(Effect.map(
          Effect.forEach(waiting, (id) => pods[0]!.engine.status(id)),
          (states) => states.every((state) => state._tag === "Suspended")
        ))
        const chargedBefore = new Set(effects.filter((effect) => effect.id.startsWith("charge-")).map((e) => e.id))
        yield* crashing.crash
        // Stored (acknowledged) while the crashed pod still owns the shard: its wake cannot be delivered.
        for (const id of waiting) {
          expect(yield* pods[0]!.engine.signal(id, Approval, Exit.succeed(true))).toEqual({ stored: true })
        }
        for (const id of waiting) {
          expect(yield* pods[0]!.engine.result(id, { timeout: "30 seconds" })).toEqual(Exit.succeed(`paid ${id} 1`))
          expect(effects.filter((effect) => effect.id === `charge-${id}`).map((effect) => effect.pod)).toEqual([1])
        }
        const results = yield* Effect.forEach(
          Array.from({ length: 16 }, (_, i) => i),
          (i) => pods[0]!.engine.result(`r${i}`, { timeout: "30 seconds" }),
          { concurrency: "unbounded" }
        )
        expect(results).toEqual(Array.from({ length: 16 }, (_, i) => Exit.succeed(`paid r${i} ${i}`)))
        const moved = expectRepeatsOnlyAfterCuts(effects, 2)
        if (moved.length > 0) console.log(`[${database.name} crashing] run again after their shard moved: ${moved}`)
        // The executions still sleeping on the crashed pod woke on the new owner.
        const takenOver = onCrashing.filter((id) => !chargedBefore.has(`charge-${id}`))
        expect(takenOver.length).toBeGreaterThan(0)
        for (const id of takenOver) {
          expect(effects.filter((effect) => effect.id === `charge-${id}`).at(-1)?.pod).toBe(1)
        }
      }), 90_000)

    it.scopedLive("a stale owner's write is fenced by the shard epoch, and the stale owner stops the execution", () =>
      Effect.gen(function*() {
        const effects: Array<SideEffect> = []
        const gate = yield* Deferred.make<void>()
        const db = yield* database.make
        const { startPod } = yield* makeEngineCluster(db, makeWorkflow(effects, gate), engineOptions)
        const pod = yield* startPod(1)
        yield* until(Effect.map(served(pod), (shards) => shards.length === 30))
        yield* pod.engine.start(new Payment({ id: "s1", amount: 7, wait: "none" }))
        yield* until(Effect.sync(() => effects.some((effect) => effect.id === "charge-s1")))
        // A newer owner of the shard (a higher epoch) raises the fence while the charge is in flight.
        const shard = pod.sharding.getShardId("Payment/s1").value
        const epoch = (yield* pod.sharding.servedShardEpochs).get(shard)!
        const sqlContext = yield* Layer.build(db.journal())
        const sql = Context.get(sqlContext, SqlClient.SqlClient)
        yield* sql`UPDATE ${sql(`${db.prefix}_cluster_fences`)} SET epoch = ${epoch + 1} WHERE shard_id = ${shard}`
        yield* Deferred.succeed(gate, undefined)
        yield* until(Effect.map(pod.engine.liveExecutions, (n) => n === 0))
        // Nothing of the charge was recorded: the execution is still running (for the new owner to finish).
        const state = yield* pod.engine.status("s1")
        expect(state._tag).toBe("Running")
        expect(yield* pod.engine.poll("s1")).toEqual(expect.objectContaining({ _tag: "None" }))
      }), 60_000)
  })
}
