/**
 * Workflows on the cluster, edge cases the other cluster tests do not cover (found by a review). Pods in
 * one process over the in-process transport, on a shared SQLite file and on PostgreSQL, live clock.
 *
 * - the same execution id started again with another payload, from another pod: the in-process engine
 *   refuses it (`PayloadMismatchError`); the cluster must too, not answer from the first start's reply;
 * - a parent and its child ("children run in their root's entity"), a signal to the child sent from a pod
 *   that does not own it, and the child's owner leaving while the child waits (a suspended parent was not
 *   resumed when its child completed: the wake was left to another pod's engine, which does not own it);
 * - a start for a shard no pod serves: how long its caller waits for the retryable error;
 * - bad input sent straight to the entity: a start whose payload does not decode, a start of an unknown
 *   workflow, a wake for an unknown execution;
 * - a start without `requestId`, as callers of the previous release send it (a rolling upgrade);
 * - a caller on another pod gets the result pushed by the owner (no journal reads while it waits), and
 *   its wait does not hold the execution's entity (a start to that entity meanwhile is answered).
 */
import type { Sharding } from "@effect-cluster/cluster"
import { Message } from "@effect-cluster/cluster"
import { Activity, DurableDeferred, DurableExecutionJournal, Workflow, WorkflowError } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, PrimaryKey, Schema } from "effect"
import type * as Scope from "effect/Scope"
import { entityTypeOf, StartExecution, WakeExecution } from "../src/internal/cluster/protocol.js"
import { isShardMoved } from "../src/internal/engineLaunch.js"
import { clusterDatabases, makeEngineCluster, PodName, served, until } from "./utils/engineCluster.js"
import type { SharedDatabase } from "./utils/journals.js"

class Payment extends Message.TaggedMessage<Payment>()(
  "Payment",
  Schema.String,
  Schema.String,
  { id: Schema.String, amount: Schema.Number },
  (payment) => payment.id
) {}

class Shipment extends Message.TaggedMessage<Shipment>()(
  "Shipment",
  Schema.String,
  Schema.String,
  { orderId: Schema.String },
  (shipment) => `ship-${shipment.orderId}`
) {}

const Pickup = DurableDeferred.make("pickup", { success: Schema.String })

/** Gates of the `gated-*` payments' activity, by payment id (opened by the tests). */
const gates = new Map<string, Deferred.Deferred<void>>()
const gateOf = (id: string) => {
  let gate = gates.get(id)
  if (gate === undefined) {
    gate = Deferred.unsafeMake<void>(undefined as any)
    gates.set(id, gate)
  }
  return gate
}

interface Run {
  readonly id: string
  readonly pod: number
}

const makeWorkflows = (runs: Array<Run>) => {
  const record = (id: string) =>
    Activity.make(id, Schema.Number, Schema.String)(
      Effect.gen(function*() {
        const pod = yield* PodName
        runs.push({ id, pod })
        return pod
      })
    )
  const child = Workflow.make(Shipment, (shipment) =>
    Effect.gen(function*() {
      if (shipment.orderId.includes("nap")) yield* Workflow.sleep("nap", "300 millis")
      const courier = shipment.orderId.includes("nap") ? "nobody" : yield* DurableDeferred.await(Pickup)
      const pod = yield* record(`label-${shipment.orderId}`)
      return `label ${shipment.orderId} by ${courier} on ${pod}`
    }))
  const parent = Workflow.make(Payment, (payment) =>
    Effect.gen(function*() {
      yield* record(`charge-${payment.id}`)
      if (payment.id.startsWith("gated")) {
        yield* Activity.make(`gate-${payment.id}`, Schema.Void, Schema.String)(Deferred.await(gateOf(payment.id)))
      }
      if (payment.id.startsWith("parent")) {
        const label = yield* Workflow.executeChild(new Shipment({ orderId: payment.id }))
        return `paid ${payment.id} ${payment.amount}: ${label}`
      }
      return `paid ${payment.id} ${payment.amount}`
    }))
  return Workflow.union(parent, child)
}

/** The engine's periodic shard check every second. */
const engineOptions = { shardCheckInterval: "1 second" } as const

const ownerOf = (pods: ReadonlyArray<{ readonly port: number; readonly sharding: Sharding.Sharding }>, entityId: string) =>
  Effect.gen(function*() {
    const shard = pods[0]!.sharding.getShardId(entityId).value
    for (const pod of pods) if ((yield* pod.sharding.servedShardEpochs).has(shard)) return pod
    return undefined
  })

/** Two pods serving 15 shards each. */
const twoPods = (runs: Array<Run>, database: Effect.Effect<SharedDatabase, never, Scope.Scope>) =>
  Effect.gen(function*() {
    const db = yield* database
    const { startPod } = yield* makeEngineCluster(db, makeWorkflows(runs), engineOptions)
    const pods = [yield* startPod(1), yield* startPod(2)]
    yield* until(Effect.map(Effect.forEach(pods, served), (all) => all.every((shards) => shards.length === 15)))
    return pods
  })

for (const database of clusterDatabases) describe.skipIf(database.skip !== undefined)(`ClusterWorkflowEngine edge cases on ${database.name}`, () => {
  it.scopedLive("the same execution id with another payload, from another pod, is refused as in-process", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      // Finished: the second caller must not get the first payload's result (the owner's entity answers a
      // StartExecution with the same primary key, start/Payment/d1, from its reply cache).
      expect(yield* pods[0]!.engine.send(new Payment({ id: "d1", amount: 1 }))).toBe("paid d1 1")
      const other = yield* Effect.exit(pods[1]!.engine.execute(new Payment({ id: "d1", amount: 2 })))
      expect(other).toEqual(Exit.fail(expect.any(WorkflowError.PayloadMismatchError)))
    }), 60_000)

  it.scopedLive("a running execution's id started with another payload, from another pod, is refused as in-process", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      yield* pods[0]!.engine.start(new Payment({ id: "d2", amount: 1 }))
      const second = yield* Effect.exit(pods[1]!.engine.start(new Payment({ id: "d2", amount: 2 })))
      expect(second).toEqual(Exit.fail(expect.any(WorkflowError.PayloadMismatchError)))
    }), 60_000)

  it.scopedLive("an execution deleted (deleteCompleted) and started again with its id runs again, as in-process", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      expect(yield* pods[0]!.engine.send(new Payment({ id: "e1", amount: 1 }))).toBe("paid e1 1")
      yield* until(Effect.map(pods[0]!.engine.deleteCompleted("0 millis"), (n) => n === 1))
      expect(yield* pods[0]!.engine.status("e1")).toEqual({ _tag: "Unknown" })
      // A new execution with the old id: it runs (the owner's entity must not answer from its reply cache).
      expect(yield* pods[1]!.engine.send(new Payment({ id: "e1", amount: 2 }))).toBe("paid e1 2")
      expect(runs.map((run) => run.id)).toEqual(["charge-e1", "charge-e1"])
    }), 60_000)

  it.scopedLive("a child runs in its parent's entity; a signal to it from the other pod completes both", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      // A parent whose own entity's shard and its child's (were the child a root) have different owners.
      let id = ""
      for (let i = 0; i < 100 && id === ""; i++) {
        const parentOwner = yield* ownerOf(pods, `Payment/parent${i}`)
        const childOwner = yield* ownerOf(pods, `Shipment/ship-parent${i}`)
        if (parentOwner !== undefined && childOwner !== undefined && parentOwner.port !== childOwner.port) {
          id = `parent${i}`
        }
      }
      expect(id).not.toBe("")
      const owner = (yield* ownerOf(pods, `Payment/${id}`))!
      const other = pods.find((pod) => pod.port !== owner.port)!
      yield* other.engine.start(new Payment({ id, amount: 5 }))
      yield* until(Effect.map(other.engine.status(`${id}/ship-${id}`), (state) => state._tag === "Suspended"))
      expect(yield* other.engine.signal(`${id}/ship-${id}`, Pickup, Exit.succeed("dhl"))).toEqual({ stored: true })
      const result = yield* other.engine.result(id, { timeout: "15 seconds" })
      expect(result).toEqual(Exit.succeed(`paid ${id} 5: label ${id} by dhl on ${owner.port}`))
      expect(runs).toEqual([{ id: `charge-${id}`, pod: owner.port }, { id: `label-${id}`, pod: owner.port }])
    }), 60_000)

  it.scopedLive("a child that sleeps: when it completes, its suspended parent resumes (two pods)", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      const id = "parentnap1"
      const owner = (yield* ownerOf(pods, `Payment/${id}`))!
      yield* pods[0]!.engine.start(new Payment({ id, amount: 7 }))
      const result = yield* pods[0]!.engine.result(id, { timeout: "15 seconds" })
      expect(result).toEqual(Exit.succeed(`paid ${id} 7: label ${id} by nobody on ${owner.port}`))
    }), 60_000)

  it.scopedLive("a parent and its waiting child move together when their pod leaves; the signal reaches the child there", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      const leaving = pods[1]!
      const staying = pods[0]!
      let id = ""
      for (let i = 0; i < 100 && id === ""; i++) {
        if ((yield* ownerOf(pods, `Payment/parent${i}`))?.port === leaving.port) id = `parent${i}`
      }
      yield* staying.engine.start(new Payment({ id, amount: 6 }))
      yield* until(Effect.map(staying.engine.status(`${id}/ship-${id}`), (state) => state._tag === "Suspended"))
      yield* leaving.leave
      yield* until(Effect.map(served(staying), (shards) => shards.length === 30))
      expect(yield* staying.engine.signal(`${id}/ship-${id}`, Pickup, Exit.succeed("ups"))).toEqual({ stored: true })
      const result = yield* staying.engine.result(id, { timeout: "20 seconds" })
      expect(result).toEqual(Exit.succeed(`paid ${id} 6: label ${id} by ups on ${staying.port}`))
      expect(runs.filter((run) => run.id === `label-${id}`)).toEqual([{ id: `label-${id}`, pod: staying.port }])
    }), 60_000)

  it.scopedLive("a start for a shard no pod serves (its owner crashed, no manager to move it) fails with a retryable JournalError within 30 s", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const db = yield* database.make
      const { startPod, stopManager } = yield* makeEngineCluster(db, makeWorkflows(runs), engineOptions)
      const pods = [yield* startPod(1), yield* startPod(2)]
      yield* until(Effect.map(Effect.forEach(pods, served), (all) => all.every((shards) => shards.length === 15)))
      let id = ""
      for (let i = 0; i < 100 && id === ""; i++) {
        if ((yield* ownerOf(pods, `Payment/n${i}`))?.port === 1) id = `n${i}`
      }
      yield* stopManager
      yield* pods[0]!.crash
      const exit = yield* Effect.exit(pods[1]!.engine.start(new Payment({ id, amount: 1 })).pipe(
        // 12 attempts 50 ms doubling up to 1 s apart (retryingStart) are some 8.5 s; but each attempt is a
        // whole send with its own routing retries (about 11 s each here): the caller waited 139 s.
        Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => "no answer in 30 s" as const })
      ))
      expect(exit).toEqual(Exit.fail(expect.objectContaining({ _tag: "JournalError", operation: "start", retryable: true })))
      expect(runs).toEqual([])
    }), 90_000)

  it.scopedLive("bad input sent straight to the entity gets a typed error or nothing, never a defect", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      const messenger = pods[0]!.sharding.messenger(entityTypeOf(["Payment", "Shipment"]))
      const send = (entityId: string, message: StartExecution | WakeExecution) =>
        Effect.exit(messenger.send(entityId)(message as any))
      const notJson = yield* send(
        "Payment/b1",
        new StartExecution({ workflow: "Payment", executionId: "b1", payload: "{not json", requestId: "r1" })
      )
      expect(notJson).toEqual(Exit.fail(expect.any(WorkflowError.EncodeError)))
      const wrongShape = yield* send(
        "Payment/b2",
        new StartExecution({ workflow: "Payment", executionId: "b2", payload: JSON.stringify({ _tag: "Payment", id: 3 }), requestId: "r2" })
      )
      expect(wrongShape).toEqual(Exit.fail(expect.any(WorkflowError.EncodeError)))
      const unknownWorkflow = yield* send(
        "Nope/b3",
        new StartExecution({ workflow: "Nope", executionId: "b3", payload: "{}", requestId: "r3" })
      )
      expect(Exit.isFailure(unknownWorkflow)).toBe(true)
      if (Exit.isFailure(unknownWorkflow)) expect(WorkflowError.isWorkflowEngineError(
        (unknownWorkflow.cause as any).error
      )).toBe(true)
      const unknownWake = yield* send(
        "Payment/b4",
        new WakeExecution({ workflow: "Payment", executionId: "b4", reason: "inbox", version: 1 })
      )
      expect(unknownWake).toEqual(Exit.void)
      expect(yield* pods[0]!.engine.status("b1")).toEqual({ _tag: "Unknown" })
      expect(yield* pods[0]!.engine.status("b4")).toEqual({ _tag: "Unknown" })
      expect(runs).toEqual([])
    }), 60_000)

  it.scopedLive("a start without requestId (a caller of the previous release) is accepted and runs", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      const entityId = "Payment/old1"
      const ownerPort = (yield* ownerOf(pods, entityId))!.port
      const owner = pods.find((pod) => pod.port === ownerPort)!
      const other = pods.find((pod) => pod.port !== ownerPort)!
      // The previous release's message: no requestId, an awaitMillis this release ignores. Sent from the
      // pod that does not own it, so it crosses the (serializing) transport and is decoded by the owner.
      const legacy = Schema.decodeUnknownSync(StartExecution)({
        _tag: "StartExecution",
        workflow: "Payment",
        executionId: "old1",
        payload: JSON.stringify({ _tag: "Payment", id: "old1", amount: 4 }),
        awaitMillis: 1000
      })
      expect(PrimaryKey.value(legacy)).toBe("start/Payment/old1")
      const reply = yield* other.sharding.messenger(entityTypeOf(["Payment", "Shipment"])).send(entityId)(legacy as any)
      expect((reply as any)._tag === "Running" || (reply as any)._tag === "Finished").toBe(true)
      expect(yield* other.engine.result("old1", { timeout: "20 seconds" })).toEqual(Exit.succeed("paid old1 4"))
      expect(runs).toEqual([{ id: "charge-old1", pod: owner.port }])
    }), 60_000)

  it.scopedLive("a caller on another pod gets the result pushed by the owner; its wait leaves the execution's entity free", () =>
    Effect.gen(function*() {
      const runs: Array<Run> = []
      const pods = yield* twoPods(runs, database.make)
      const id = `gated-${database.name}`
      const ownerPort = (yield* ownerOf(pods, `Payment/${id}`))!.port
      const owner = pods.find((pod) => pod.port === ownerPort)!
      const caller = pods.find((pod) => pod.port !== ownerPort)!
      const waiting = yield* Effect.fork(caller.engine.execute(new Payment({ id, amount: 3 })))
      yield* until(Effect.sync(() => runs.some((run) => run.id === `charge-${id}`)))
      // let the caller's wait reach the owner
      yield* Effect.sleep("300 millis")
      const readsBefore = caller.reads.count
      // The execution's entity is free while the caller waits: a start of the same execution (joined) is
      // answered at once, from either pod.
      expect(yield* Effect.timeout(caller.engine.start(new Payment({ id, amount: 3 })), "5 seconds")).toBe(id)
      expect(yield* Effect.timeout(owner.engine.start(new Payment({ id, amount: 3 })), "5 seconds")).toBe(id)
      // still gated: the body waits, the caller is not answered
      yield* Effect.sleep("700 millis")
      expect(waiting.unsafePoll()).toBe(null)
      yield* Deferred.succeed(gateOf(id), undefined)
      expect(yield* Effect.timeout(Fiber.join(waiting), "10 seconds")).toBe(`paid ${id} 3`)
      // Pushed: the caller read the row at most once for its wait (a bound of the owner's wait, 1 s, may
      // have passed on a loaded machine); polling read it every 10 to 1,000 ms (about 8 times here).
      expect(caller.reads.count - readsBefore).toBeLessThanOrEqual(1)
    }), 60_000)
})

describe("a start refused by a moved shard's fence", () => {
  it("is recognised by JournalError.reason, and by its message only from a pod of the previous release (no reason)", () => {
    const error = (fields: { message: string; reason?: "shard-moved" }) =>
      new DurableExecutionJournal.JournalError({ operation: "start", retryable: true, ...fields })
    expect(isShardMoved(error({ message: "refused", reason: "shard-moved" }))).toBe(true)
    expect(isShardMoved(error({ message: "the execution's shard moved: retry" }))).toBe(true)
    expect(isShardMoved(error({ message: "could not reach the execution's owner pod" }))).toBe(false)
    expect(isShardMoved(new DurableExecutionJournal.JournalError({
      operation: "claim",
      message: "refused",
      retryable: true,
      reason: "shard-moved"
    }))).toBe(false)
  })
})
