import {
  Message,
  MessageState,
  RecipientBehaviour,
  RecipientType,
  Sharding,
  ShardId,
  ShardingException
} from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, HashSet, Option, Queue, Schema, TestClock } from "effect"
import { eventually, makeTestCluster, settle, singlePod } from "./utils/cluster.js"
import { Counter, freshId, GetCount } from "./utils/counter.js"
import { Observer } from "./utils/observer.js"


class Charge extends Message.TaggedMessage<Charge>()(
  "Charge",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, ms: Schema.Number },
  (_) => _.id
) {}
const Payments = RecipientType.makeEntityType("Payments", Charge)

// A handler with a side effect first and its answer later (a call to a payment provider, say).
const charging = (charged: Array<string>) =>
  RecipientBehaviour.fromFunctionEffect<Charge, never>((_, message) =>
    Effect.sync(() => charged.push(message.id)).pipe(
      Effect.zipRight(Effect.sleep(Duration.millis(message.ms))),
      Effect.map(() => MessageState.Processed(Exit.succeed(charged.length)))
    )
  )

describe("a send retried after the caller's own timeout (issue 10 #7)", () => {
  it.scoped("runs the handler once on the same pod: the retry gets the stored reply", () =>
    Effect.gen(function*() {
      const charged: Array<string> = []
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Payments)(charging(charged))
      const messenger = yield* Sharding.messenger(Payments)
      const message = new Charge({ id: "charge-1", ms: 2_000 })
      const first = yield* Effect.fork(Effect.either(messenger.send("p")(message).pipe(Effect.timeout("1 second"))))
      yield* TestClock.adjust("1 second")
      const timedOut = yield* Fiber.join(first)
      expect(timedOut._tag).toBe("Left")
      const retry = yield* Effect.fork(messenger.send("p")(message))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(retry)).toBe(1)
      expect(charged).toEqual(["charge-1"])
    }).pipe(Effect.provide(singlePod())))

  it.live("runs the handler once on the same pod (live clock)", () =>
    Effect.gen(function*() {
      const charged: Array<string> = []
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Payments)(charging(charged))
      const messenger = yield* Sharding.messenger(Payments)
      const message = new Charge({ id: "charge-1", ms: 200 })
      const timedOut = yield* Effect.either(messenger.send("p")(message).pipe(Effect.timeout("50 millis")))
      expect(timedOut._tag).toBe("Left")
      expect(yield* messenger.send("p")(message)).toBe(1)
      expect(charged).toEqual(["charge-1"])
    }).pipe(Effect.scoped, Effect.provide(singlePod())))

  it.scoped("runs the handler once when the entity lives on another pod", () =>
    Effect.gen(function*() {
      const charged: Array<string> = []
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, Sharding.registerEntity(Payments)(charging(charged)))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      // an older pod gets no shards: it only sends
      const client = yield* cluster.startPod(9, Sharding.registerEntity(Payments)(charging(charged)), {
        serverVersion: "0.0.1"
      })
      const messenger = client.sharding.messenger(Payments)
      const message = new Charge({ id: "charge-2", ms: 2_000 })
      const first = yield* Effect.fork(Effect.either(messenger.send("p")(message).pipe(Effect.timeout("1 second"))))
      yield* settle
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(first))._tag).toBe("Left")
      const retry = yield* Effect.fork(messenger.send("p")(message))
      yield* settle
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(retry)).toBe(1)
      expect(charged).toEqual(["charge-2"])
    }))
})

class Job extends Message.TaggedMessage<Job>()("Job", Schema.Never, Schema.String, { id: Schema.String }, (_) => _.id) {}
const Jobs = RecipientType.makeEntityType("Jobs", Job)

describe("a mailbox entity's limits (issue 10 #10)", () => {
  it.live("fails with MailboxFullException beyond entityMailboxCapacity waiting messages", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Jobs)(
        RecipientBehaviour.fromInMemoryQueue((_, dequeue) =>
          // takes one message and never another
          Effect.zipRight(Queue.take(dequeue), Effect.never)
        )
      )
      const messenger = yield* Sharding.messenger(Jobs)
      yield* messenger.sendDiscard("j")(new Job({ id: "taken" }))
      yield* settle
      for (let i = 0; i < 3; i++) yield* messenger.sendDiscard("j")(new Job({ id: `queued-${i}` }))
      const full = yield* Effect.flip(messenger.sendDiscard("j")(new Job({ id: "one-too-many" })))
      expect(full._tag).toBe("MailboxFullException")
      // a message already accepted is answered from its state, not refused
      yield* messenger.sendDiscard("j")(new Job({ id: "queued-0" }))
    }).pipe(
      Effect.scoped,
      Effect.provide(singlePod({ entityMailboxCapacity: 3, entityTerminationTimeout: Duration.millis(100) }))
    ))

  it.scoped("remembers a bounded number of replies by primary key", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Jobs)(
        RecipientBehaviour.fromInMemoryQueue((_, dequeue, processed) =>
          Effect.forever(Effect.gen(function*() {
            const message = yield* Queue.take(dequeue)
            if (message._tag !== "Job") return yield* Effect.interrupt
            handled.push(message.id)
            yield* processed(message, Option.some(Exit.succeed(message.id)))
          }))
        )
      )
      const messenger = yield* Sharding.messenger(Jobs)
      // deduplicationCapacity (2) + mailboxCapacity (2) keys are kept
      for (let i = 0; i < 5; i++) {
        yield* messenger.sendDiscard("j")(new Job({ id: `job-${i}` }))
        yield* settle
      }
      yield* messenger.sendDiscard("j")(new Job({ id: "job-4" })) // remembered: not handled again
      yield* messenger.sendDiscard("j")(new Job({ id: "job-0" })) // forgotten: handled again
      yield* settle
      expect(handled).toEqual(["job-0", "job-1", "job-2", "job-3", "job-4", "job-0"])
    }).pipe(Effect.provide(singlePod({ entityMailboxCapacity: 2, entityDeduplicationCapacity: 2 }))))
})

describe("a pod told of an epoch below the one it holds (issue 10 #4, pod side)", () => {
  // Pod 2 holds half the shards at epoch 2 (moved from pod 1); an entity of one of them runs on pod 2.
  const setup = Effect.gen(function*() {
    const observer = new Observer()
    const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
    yield* cluster.startManager
    const a = yield* cluster.startPod(1, observer.counterOn(1))
    yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
    const b = yield* cluster.startPod(2, observer.counterOn(2))
    yield* eventually(Effect.map(b.sharding.getAssignedShardIds, (s) => Array.from(s).length === 15))
    const shard = Array.from(yield* b.sharding.getAssignedShardIds)[0]!.value
    let id = ""
    for (let i = 0;; i++) if (b.sharding.getShardId(`r${i}`).value === shard) { id = `r${i}`; break }
    yield* b.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
    expect(observer.where(id)).toEqual([2])
    const holds = Effect.map(b.sharding.getAssignedShardIds, (set) => Array.from(set, (s) => s.value).includes(shard))
    return { observer, b, shard, id, holds }
  })

  it.scoped("stops the shard and refuses to confirm a revocation it did not release", () =>
    Effect.gen(function*() {
      const { b, holds, id, observer, shard } = yield* setup
      // A manager that lost its epochs revokes the shard at epoch 1 (pod 2 holds it at 2).
      const refused = yield* Effect.either(b.sharding.unassign(HashSet.make(ShardId.make(shard)), new Map([[shard, 1]])))
      expect(refused._tag).toBe("Left")
      expect(observer.where(id)).toEqual([]) // stopped all the same, before the answer
      expect(yield* holds).toBe(false)
      // the manager's epochs are the truth from now on: its next grant gives the shard back
      yield* b.sharding.heartbeat
      expect(yield* holds).toBe(true)
    }))

  it.scoped("stops a shard granted again below its epoch", () =>
    Effect.gen(function*() {
      const { b, holds, id, observer, shard } = yield* setup
      yield* b.sharding.assign(HashSet.make(ShardId.make(shard)), new Map([[shard, 1]]))
      expect(observer.where(id)).toEqual([])
      expect(yield* holds).toBe(false)
      yield* b.sharding.heartbeat
      expect(yield* holds).toBe(true)
    }))
})

describe("a malformed message (issue 10 #13)", () => {
  it.scoped("gets the same SerializationException whether its entity is local or remote", () =>
    Effect.gen(function*() {
      const handled: Array<unknown> = []
      const behaviour = RecipientBehaviour.fromFunctionEffect<Job, never>((_, message) =>
        Effect.sync(() => {
          handled.push(message)
          return MessageState.Processed(Exit.succeed("done"))
        })
      )
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, Sharding.registerEntity(Jobs)(behaviour))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      const client = yield* cluster.startPod(9, Sharding.registerEntity(Jobs)(behaviour), { serverVersion: "0.0.1" })
      for (const body of ['{"_tag":"Job","id":5}', '{"_tag":"Job","id":"plain"}']) {
        const untrusted = JSON.parse(body) as Job
        const local = yield* Effect.flip(a.sharding.messenger(Jobs).send("j")(untrusted))
        const remote = yield* Effect.flip(client.sharding.messenger(Jobs).send("j")(untrusted))
        expect(local._tag).toBe("SerializationException")
        expect(remote._tag).toBe(local._tag)
        expect(ShardingException.deliveryOutcome(remote as ShardingException.ShardingException)).toBe(
          ShardingException.deliveryOutcome(local as ShardingException.ShardingException)
        )
      }
      expect(handled).toEqual([])
      // a constructed message goes through, locally and remotely
      expect(yield* a.sharding.messenger(Jobs).send("j")(new Job({ id: "ok" }))).toBe("done")
      expect(yield* client.sharding.messenger(Jobs).send("j")(new Job({ id: "ok-2" }))).toBe("done")
    }))
})

const Announcements = RecipientType.makeTopicType("Announcements", Job)

describe("broadcast (issue 10 #12)", () => {
  it.scoped("reaches every pod the manager knows, including one that holds no shard yet", () =>
    Effect.gen(function*() {
      const heard: Array<string> = []
      const listener = (pod: number) =>
        Sharding.registerTopic(Announcements)(RecipientBehaviour.fromFunctionEffect<Job, never>((_, message) =>
          Effect.sync(() => {
            heard.push(`${message.id}@${pod}`)
            return MessageState.Processed(Exit.succeed(`pod ${pod}`))
          })
        ))
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, listener(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      // registered with the manager, but of an older version: it gets no shard, so no routing table lists it
      yield* cluster.startPod(2, listener(2), { serverVersion: "0.0.1" })
      const replies = yield* a.sharding.broadcaster(Announcements).broadcast("news")(new Job({ id: "hello" }))
      const answered = Array.from(replies, ([pod, reply]) => [pod.port, reply._tag === "Right" ? reply.right : "error"])
      expect(answered.sort()).toEqual([[1, "pod 1"], [2, "pod 2"]])
      yield* a.sharding.broadcaster(Announcements).broadcastDiscard("news")(new Job({ id: "again" }))
      yield* settle
      expect(heard.sort()).toEqual(["again@1", "again@2", "hello@1", "hello@2"])
    }))
})
