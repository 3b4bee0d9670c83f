import {
  InProcessTransport,
  PodAddress,
  RecipientAddress,
  SerializedEnvelope,
  SerializedMessage,
  Sharding,
  ShardingException
} from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, HashSet, Stream, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "./utils/cluster.js"
import { Counter, freshId, GetCount, Increment } from "./utils/counter.js"
import { Observer } from "./utils/observer.js"

const shardsOf = (pod: { sharding: Sharding.Sharding }) =>
  Effect.map(pod.sharding.getAssignedShardIds, (set) => Array.from(set, (shard) => shard.value).sort((a, b) => a - b))

const ownerTable = (cluster: { managerInstance: () => any }) =>
  Effect.map(
    cluster.managerInstance()!.getShardAssignments as Effect.Effect<ReadonlyArray<any>>,
    (table) => table.map((row) => row.pod === null ? null : row.pod.port as number)
  )

const allAssigned = (cluster: { managerInstance: () => any }) =>
  Effect.map(ownerTable(cluster), (owners) => owners.every((owner) => owner !== null))

// An entity id living on a given shard (30 shards).
const entityOnShard = (sharding: Sharding.Sharding, shard: number): string => {
  for (let i = 0;; i++) if (sharding.getShardId(`e${i}`).value === shard) return `e${i}`
}

describe("Cluster (in-process pods, serialization on)", () => {
  it.scoped("routes to entities on every pod and replies from wherever they live", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      expect(cluster.transport.serialize).toBe(true)
      yield* cluster.startManager
      const pods = [
        yield* cluster.startPod(1, observer.counterOn(1)),
        yield* cluster.startPod(2, observer.counterOn(2)),
        yield* cluster.startPod(3, observer.counterOn(3))
      ]
      yield* eventually(allAssigned(cluster))
      yield* TestClock.adjust("20 seconds") // one balancing round
      expect((yield* Effect.forEach(pods, shardsOf)).map((shards) => shards.length)).toEqual([10, 10, 10])
      const messenger = pods[0]!.sharding.messenger(Counter)
      for (let i = 0; i < 30; i++) yield* messenger.send(`e${i}`)(new Increment({ messageId: freshId(), by: i }))
      for (let i = 0; i < 30; i++) expect(yield* messenger.send(`e${i}`)(new GetCount({ messageId: freshId() }))).toBe(i)
      const hosts = new Set(Array.from({ length: 30 }, (_, i) => observer.where(`e${i}`)[0]))
      expect(hosts).toEqual(new Set([1, 2, 3]))
      expect(observer.violations).toEqual([])
    }))

  it.scoped("gives a joining pod shards at once, then a round every rebalanceFollowUpInterval, each moving at most rebalanceRate", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 0.1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      yield* eventually(allAssigned(cluster))
      expect((yield* shardsOf(a)).length).toBe(30)
      yield* TestClock.adjust("250 millis") // a's follow-up round finds nothing to move
      const b = yield* cluster.startPod(2)
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 3))
      for (const expected of [6, 9, 12, 15]) {
        yield* TestClock.adjust("249 millis")
        yield* settle
        expect((yield* shardsOf(b)).length).toBe(expected - 3) // not before the follow-up pause
        yield* TestClock.adjust("1 millis")
        yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === expected))
      }
      yield* TestClock.adjust("20 seconds")
      yield* settle
      expect((yield* shardsOf(a)).length).toBe(15)
      expect((yield* shardsOf(b)).length).toBe(15)
    }))

  it.scoped("servedShardEpochsChanges: the served shards now, then after each take-over, loss and the pod's leave", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      const seen: Array<number> = []
      yield* Effect.forkScoped(Stream.runForEach(a.sharding.servedShardEpochsChanges, (served) =>
        Effect.sync(() => {
          if (seen.at(-1) !== served.size) seen.push(served.size)
        })))
      yield* eventually(Effect.sync(() => seen.at(-1) === 30))
      const b = yield* cluster.startPod(2)
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      // no clock moved: the stream followed the revocations (no polling)
      yield* eventually(Effect.sync(() => seen.at(-1) === 15))
      yield* a.leave
      yield* eventually(Effect.sync(() => seen.at(-1) === 0))
      expect(seen[0]).toBe(0) // before the first grant
      expect(seen.slice(-3)).toEqual([30, 15, 0])
    }))

  it.scoped("hands a shard off gracefully: the old owner stops the entity before the new one starts it", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      yield* eventually(allAssigned(cluster))
      const messenger = a.sharding.messenger(Counter)
      for (let i = 0; i < 10; i++) yield* messenger.send(`e${i}`)(new Increment({ messageId: freshId(), by: 1 }))
      const b = yield* cluster.startPod(2, observer.counterOn(2))
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      const moved = Array.from({ length: 10 }, (_, i) => `e${i}`).filter((id) => observer.where(id).length === 0)
      expect(moved.length).toBeGreaterThan(0) // these were stopped on pod 1 by the hand-off
      // Messages keep working from both pods, answered by the new owner (a fresh instance).
      for (const id of moved) {
        expect(yield* b.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))).toBe(0)
        expect(observer.where(id)).toEqual([2])
        const stop = observer.events.indexOf(`stop ${id}@1`)
        const start = observer.events.indexOf(`start ${id}@2`)
        expect(stop).toBeGreaterThanOrEqual(0)
        expect(start).toBeGreaterThan(stop)
      }
      // A pod leaving gracefully hands everything back; a message sent meanwhile is answered, not dropped.
      const inFlight = yield* Effect.fork(a.sharding.messenger(Counter).send(moved[0]!)(new GetCount({ messageId: freshId() })))
      yield* b.leave
      yield* eventually(Effect.map(ownerTable(cluster), (owners) => owners.every((owner) => owner === 1)))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(inFlight)).toBe(0)
      expect(observer.where(moved[0]!)).toEqual([1])
      expect(observer.violations).toEqual([])
    }))

  it.scoped("a pod cut off from the manager stops its entities at lease end minus entityTerminationTimeout; the manager reassigns only after lease + margin", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      const b = yield* cluster.startPod(2, observer.counterOn(2))
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      const aShards = yield* shardsOf(a)
      const onA = entityOnShard(a.sharding, aShards[0]!)
      yield* a.sharding.messenger(Counter).send(onA)(new Increment({ messageId: freshId(), by: 1 }))
      expect(observer.where(onA)).toEqual([1])
      // t = 0: a renews its lease, then loses the manager. Its lease ends at 30 s by its own clock.
      yield* a.sharding.heartbeat
      yield* cluster.transport.partitionFromManager(a.address)
      yield* TestClock.adjust("26 seconds")
      expect(observer.where(onA)).toEqual([1])
      yield* TestClock.adjust("1 second") // 27 s = 30 s - entityTerminationTimeout (3 s)
      yield* settle
      expect(observer.where(onA)).toEqual([])
      // a refuses work for the shard it still nominally owns.
      const refused = yield* Effect.flip(
        a.sharding.sendMessageToLocalEntityManagerWithoutRetries(
          SerializedEnvelope.make(RecipientAddress.makeRecipientAddress("Counter", onA), "x", SerializedMessage.make("{}"))
        )
      )
      expect(refused).toBeInstanceOf(ShardingException.EntityNotManagedByThisPodException)
      yield* TestClock.adjust("3400 millis") // 30.4 s: the lease may not have ended by the manager's reckoning
      yield* settle
      expect((yield* ownerTable(cluster))[aShards[0]! - 1]).toBe(1)
      yield* TestClock.adjust("100 millis") // 30.5 s = lease + margin
      yield* eventually(Effect.map(ownerTable(cluster), (owners) => owners.every((owner) => owner === 2)))
      const reply = yield* Effect.fork(b.sharding.messenger(Counter).send(onA)(new GetCount({ messageId: freshId() })))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(reply)).toBe(0)
      expect(observer.where(onA)).toEqual([2])
      expect(observer.violations).toEqual([])
      // Healed, a learns it was dropped, registers again and gets shards back in a balancing round.
      yield* cluster.transport.heal(a.address)
      yield* TestClock.adjust("10 seconds")
      yield* eventually(Effect.map(shardsOf(a), (shards) => shards.length > 0))
    }))

  it.scoped("detects a dead pod by its missing heartbeats, with no message sent to it", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const events = yield* cluster.managerInstance()!.getShardingEvents.pipe(
        Stream.filter((event) => event._tag === "PodUnregistered"),
        Stream.take(1),
        Stream.runCollect,
        Effect.fork
      )
      yield* settle
      const a = yield* cluster.startPod(1)
      const b = yield* cluster.startPod(2)
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      yield* a.crash
      yield* TestClock.adjust("29 seconds") // its last heartbeat + lease + margin (30.5 s) has not passed
      expect((yield* ownerTable(cluster)).filter((owner) => owner === 1).length).toBe(15)
      yield* TestClock.adjust("11 seconds")
      yield* eventually(Effect.map(ownerTable(cluster), (owners) => owners.every((owner) => owner === 2)))
      const [event] = yield* Fiber.join(events)
      expect(event!._tag === "PodUnregistered" && event!.pod.port).toBe(1)
    }))

  it.scoped("does not declare a pod dead because another pod reports it unreachable", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      const b = yield* cluster.startPod(2)
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      const manager = cluster.managerInstance()!
      for (let i = 0; i < 5; i++) {
        yield* manager.notifyUnhealthyPod(a.address)
        yield* TestClock.adjust("20 seconds")
      }
      yield* settle
      expect((yield* shardsOf(a)).length).toBe(15)
      expect((yield* ownerTable(cluster)).filter((owner) => owner === 1).length).toBe(15)
    }))

  it.scoped("a restarted manager keeps the assignments and waits lease + margin before reassigning", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      const b = yield* cluster.startPod(2)
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      const before = yield* ownerTable(cluster)
      const epochsBefore = (yield* cluster.managerInstance()!.getShardAssignments).map((row) => row.epoch)
      yield* cluster.stopManager
      yield* a.crash // dies while nobody is watching
      yield* TestClock.adjust("10 seconds")
      yield* cluster.startManager
      yield* settle
      expect(yield* ownerTable(cluster)).toEqual(before)
      expect((yield* cluster.managerInstance()!.getShardAssignments).map((row) => row.epoch)).toEqual(epochsBefore)
      const bShards = yield* shardsOf(b)
      yield* TestClock.adjust("30 seconds") // before lease + margin (30.5 s) from the manager's start
      yield* settle
      expect(yield* ownerTable(cluster)).toEqual(before)
      yield* TestClock.adjust("12 seconds")
      yield* eventually(Effect.map(ownerTable(cluster), (owners) => owners.every((owner) => owner === 2)))
      // b kept its own shards throughout; the moved ones got new, higher epochs.
      expect((yield* shardsOf(b)).filter((shard) => bShards.includes(shard))).toEqual(bShards)
      const epochsAfter = (yield* cluster.managerInstance()!.getShardAssignments).map((row) => row.epoch)
      epochsAfter.forEach((epoch, i) => {
        expect(epoch).toBe(before[i] === 1 ? epochsBefore[i]! + 1 : epochsBefore[i]!)
      })
    }))

  it.scoped("rejects envelopes routed with an epoch the pod does not hold yet, and for shards it does not hold", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, new Observer().counterOn(1))
      yield* eventually(allAssigned(cluster))
      const table = yield* cluster.managerInstance()!.getShardAssignments
      const entityId = "e1"
      const shard = a.sharding.getShardId(entityId).value
      const epoch = table[shard - 1]!.epoch
      const body = SerializedMessage.make(JSON.stringify({ _tag: "GetCount", messageId: "q" }))
      const envelope = (e: number) =>
        SerializedEnvelope.make(RecipientAddress.makeRecipientAddress("Counter", entityId), "q", body, e)
      const pods = cluster.transport.podsFor(PodAddress.make("localhost", 9))
      const ok = yield* pods.sendAndGetState(a.address, envelope(epoch))
      expect(ok._tag).toBe("@effect/cluster/MessageState/Processed")
      const ahead = yield* Effect.flip(pods.sendAndGetState(a.address, envelope(epoch + 1)))
      expect(ahead).toBeInstanceOf(ShardingException.EntityNotManagedByThisPodException)
      const undecodable = yield* Effect.flip(pods.sendAndGetState(
        a.address,
        SerializedEnvelope.make(RecipientAddress.makeRecipientAddress("Counter", entityId), "z", SerializedMessage.make("{bad"), epoch)
      ))
      expect(undecodable).toBeInstanceOf(ShardingException.SerializationException)
      const unknownType = yield* Effect.flip(pods.sendAndGetState(
        a.address,
        SerializedEnvelope.make(RecipientAddress.makeRecipientAddress("Nope", entityId), "z", body, epoch)
      ))
      expect(unknownType).toBeInstanceOf(ShardingException.EntityTypeNotRegisteredException)
    }))

  it.scoped("gives a typed error to the caller when the owning pod has no such entity type", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      const b = yield* cluster.startPod(2) // no Counter here
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      const onB = entityOnShard(a.sharding, (yield* shardsOf(b))[0]!)
      const error = yield* Effect.flip(a.sharding.messenger(Counter).send(onB)(new GetCount({ messageId: freshId() })))
      expect(error).toBeInstanceOf(ShardingException.EntityTypeNotRegisteredException)
      expect((error as ShardingException.EntityTypeNotRegisteredException).podAddress.port).toBe(2)
    }))

  it.scoped("send retries routing failures for sendRetryTimeout, then says not delivered or outcome unknown", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({
        numberOfShards: 30,
        manager: { rebalanceRate: 1 },
        pod: { sendRetryTimeout: Duration.seconds(2) }
      })
      yield* cluster.startManager
      const observer = new Observer()
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      const b = yield* cluster.startPod(2, observer.counterOn(2))
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      const onB = entityOnShard(a.sharding, (yield* shardsOf(b))[0]!)
      const onA = entityOnShard(a.sharding, (yield* shardsOf(a))[0]!)
      // b dies: a's sends to it fail as "outcome unknown" until the manager moves b's shards (30.5 s).
      yield* cluster.transport.crash(b.address)
      const unknown = yield* Effect.fork(Effect.flip(a.sharding.messenger(Counter).send(onB)(new GetCount({ messageId: freshId() }))))
      yield* TestClock.adjust("2100 millis")
      const error = yield* Fiber.join(unknown)
      expect(error).toBeInstanceOf(ShardingException.MessageOutcomeUnknownException)
      // a is cut off from the manager: once its lease is over it owns nothing it can serve.
      yield* cluster.transport.partitionFromManager(a.address)
      yield* TestClock.adjust("30 seconds")
      const notDelivered = yield* Effect.fork(
        Effect.flip(a.sharding.messenger(Counter).send(onA)(new GetCount({ messageId: freshId() })))
      )
      yield* TestClock.adjust("2100 millis")
      const second = yield* Fiber.join(notDelivered)
      expect(second).toBeInstanceOf(ShardingException.MessageNotDeliveredException)
      expect(ShardingException.deliveryOutcome(second as ShardingException.ShardingException)).toBe("NotDelivered")
    }))

  it.scoped("runs a singleton on one pod at a time and moves it when that pod leaves or dies", () =>
    Effect.gen(function*() {
      const running = new Set<number>()
      let overlaps = 0
      const singleton = (pod: number) =>
        Sharding.registerSingleton(
          "reaper",
          Effect.acquireRelease(
            Effect.sync(() => {
              if (running.size > 0) overlaps++
              running.add(pod)
            }),
            () => Effect.sync(() => running.delete(pod))
          ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
        )
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const pods = [yield* cluster.startPod(1, singleton(1)), yield* cluster.startPod(2, singleton(2)), yield* cluster.startPod(3, singleton(3))]
      yield* eventually(Effect.map(ownerTable(cluster), (owners) => new Set(owners).size === 3))
      yield* TestClock.adjust("20 seconds")
      yield* eventually(Effect.sync(() => running.size === 1))
      const first = [...running][0]!
      yield* pods[first - 1]!.leave
      yield* eventually(Effect.sync(() => running.size === 1 && !running.has(first)))
      const second = [...running][0]!
      yield* pods[second - 1]!.crash
      running.delete(second) // a crashed process runs nothing
      yield* TestClock.adjust("45 seconds")
      const third = [1, 2, 3].find((pod) => pod !== first && pod !== second)!
      yield* eventually(Effect.sync(() => running.has(third)))
      expect(overlaps).toBe(0)
    }))

  it.scoped("during a rolling upgrade gives no shards to a pod of an older version", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const old = yield* cluster.startPod(1, undefined, { serverVersion: "1.0.0" })
      yield* eventually(allAssigned(cluster))
      const upgraded = yield* cluster.startPod(2, undefined, { serverVersion: "1.1.0" })
      yield* eventually(Effect.map(shardsOf(upgraded), (shards) => shards.length === 30))
      const late = yield* cluster.startPod(3, undefined, { serverVersion: "1.0.0" })
      yield* TestClock.adjust("20 seconds")
      yield* settle
      expect((yield* shardsOf(late)).length).toBe(0)
      expect((yield* shardsOf(old)).length).toBe(0)
    }))

  it.scoped("epochs only grow across moves", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 30, manager: { rebalanceRate: 1 } })
      yield* cluster.startManager
      const seen: Array<Array<number>> = []
      const snapshot = Effect.flatMap(
        Effect.suspend(() => cluster.managerInstance()!.getShardAssignments),
        (table) => Effect.sync(() => void seen.push(table.map((row) => row.epoch)))
      )
      const a = yield* cluster.startPod(1)
      yield* eventually(allAssigned(cluster))
      yield* snapshot
      const b = yield* cluster.startPod(2)
      yield* eventually(Effect.map(shardsOf(b), (shards) => shards.length === 15))
      yield* snapshot
      yield* b.leave
      yield* eventually(Effect.map(shardsOf(a), (shards) => shards.length === 30))
      yield* snapshot
      for (let i = 1; i < seen.length; i++) {
        seen[i]!.forEach((epoch, shard) => expect(epoch).toBeGreaterThanOrEqual(seen[i - 1]![shard]!))
      }
      expect(seen[2]!.some((epoch, shard) => epoch > seen[0]![shard]!)).toBe(true)
      expect(Exit.isExit(Exit.void)).toBe(true)
      expect(HashSet.size(yield* a.sharding.getPods)).toBeGreaterThanOrEqual(1)
      expect(InProcessTransport.InProcessTransport.key).toContain("InProcessTransport")
    }))
})
