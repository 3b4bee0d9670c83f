import {
  InProcessTransport,
  ManagerConfig,
  Pod,
  PodAddress as PodAddressModule,
  type PodAddress,
  Pods,
  PodsHealth,
  type Sharding,
  ShardingException,
  ShardManager,
  Storage
} from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Duration, Effect, Exit, Fiber, HashMap, Layer, Option, Ref, Scope, Stream, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "./utils/cluster.js"

const shardCount = (pod: { sharding: Sharding.Sharding }) =>
  Effect.map(pod.sharding.getAssignedShardIds, (set) => Array.from(set).length)

const memoryStorage = Effect.map(Layer.build(Storage.memory), Context.get(Storage.Storage))

describe("ShardManager", () => {
  it.scoped("refuses to run on a 2024-style Storage without durable epochs", () =>
    Effect.gen(function*() {
      // A 2024 storage (assignments and pods only), e.g. kept in a file that outlives the process.
      const file = {
        assignments: yield* Ref.make(HashMap.empty<any, any>()),
        pods: yield* Ref.make(HashMap.empty<any, any>())
      }
      const storage2024 = Storage.make({
        getAssignments: Ref.get(file.assignments),
        saveAssignments: (value) => Ref.set(file.assignments, value),
        assignmentsStream: Stream.empty,
        getPods: Ref.get(file.pods),
        savePods: (value) => Ref.set(file.pods, value)
      })
      const exit = yield* Effect.exit(
        Layer.build(
          InProcessTransport.layerManager({ numberOfShards: 30 }).pipe(
            Layer.provide(InProcessTransport.layer()),
            Layer.provide(Layer.succeed(Storage.Storage, storage2024))
          )
        )
      )
      // Were it to run, a restart in a new process would begin again at epoch 0 under pods holding epoch 1+.
      expect(Exit.isFailure(exit)).toBe(true)
      const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
      expect(Option.getOrThrow(defect)).toBeInstanceOf(ShardingException.InvalidConfigurationException)
    }))

  it.scoped("publishes a grant only once its write landed, retrying the write persistRetryCount times", () =>
    Effect.gen(function*() {
      const memory = yield* memoryStorage
      let failuresLeft = 2
      const storage: Storage.Storage = {
        ...memory,
        saveEpochs: (epochs) =>
          Effect.suspend(() =>
            failuresLeft-- > 0
              ? Effect.fail(new Storage.StorageException({ reason: "database unavailable" }))
              : memory.saveEpochs(epochs)
          )
      }
      const cluster = yield* makeTestCluster({
        numberOfShards: 30,
        storage,
        manager: { persistRetryInterval: Duration.seconds(1), persistRetryCount: 2 }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      yield* settle
      yield* a.sharding.heartbeat
      // Two failed writes: nothing is shown or pushed yet.
      expect(yield* shardCount(a)).toBe(0)
      expect((yield* cluster.managerInstance()!.getShardAssignments).every((row) => row.pod === null)).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(yield* shardCount(a)).toBe(0)
      yield* TestClock.adjust("1 second") // the second retry succeeds
      yield* eventually(Effect.map(shardCount(a), (count) => count === 30))
      expect(HashMap.size(yield* memory.getEpochs)).toBe(30)
    }))

  it.scoped("withdraws a grant whose write keeps failing, and never reissues its epoch", () =>
    Effect.gen(function*() {
      const memory = yield* memoryStorage
      let healthy = false
      const storage: Storage.Storage = {
        ...memory,
        saveAssignments: (assignments) =>
          Effect.suspend(() =>
            healthy
              ? memory.saveAssignments(assignments)
              : Effect.fail(new Storage.StorageException({ reason: "database unavailable" }))
          )
      }
      const cluster = yield* makeTestCluster({
        numberOfShards: 30,
        storage,
        manager: { persistRetryInterval: Duration.seconds(1), persistRetryCount: 1, rebalanceRetryInterval: Duration.seconds(10) }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      yield* settle
      // The registration's write and the grant's write each fail twice (once, then on their retry 1 s later).
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* a.sharding.heartbeat
      expect(yield* shardCount(a)).toBe(0)
      const withdrawn = yield* cluster.managerInstance()!.getShardAssignments
      expect(withdrawn.every((row) => row.pod === null && row.epoch === 1)).toBe(true)
      healthy = true
      yield* TestClock.adjust("9 seconds")
      yield* settle
      yield* a.sharding.heartbeat
      expect(yield* shardCount(a)).toBe(0) // the next round comes rebalanceRetryInterval after the failed one
      yield* TestClock.adjust("1 second")
      yield* eventually(Effect.map(shardCount(a), (count) => count === 30))
      const granted = yield* cluster.managerInstance()!.getShardAssignments
      expect(granted.every((row) => row.pod?.port === 1 && row.epoch === 2)).toBe(true)
    }))

  it.live("closes at once while a write is being retried and a pod unregisters as the cluster stops", () =>
    Effect.gen(function*() {
      const memory = yield* Effect.scoped(memoryStorage)
      const storage: Storage.Storage = {
        ...memory,
        saveAssignments: () => Effect.fail(new Storage.StorageException({ reason: "database unavailable" }))
      }
      const scope = yield* Scope.make()
      const cluster = yield* Effect.provideService(
        makeTestCluster({
          numberOfShards: 30,
          storage,
          manager: { persistRetryInterval: Duration.seconds(10), persistRetryCount: 10 }
        }),
        Scope.Scope,
        scope
      )
      yield* cluster.startManager
      yield* cluster.startPod(1)
      yield* settle // the registration round now waits for its write, holding the rebalance lock
      // The pod's finalizer unregisters (the manager forks a round from it) while the grant's write waits
      // for its retry: the manager's fibers are interrupted, not awaited.
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("5 seconds"), Effect.exit)
      expect(Exit.isSuccess(closed)).toBe(true)
    }))

  it.scoped("with the default config, balances a joining pod within seconds, at most 6 of 300 shards per round", () =>
    Effect.gen(function*() {
      const cluster = yield* makeTestCluster({ numberOfShards: 300 })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1)
      yield* eventually(Effect.map(shardCount(a), (count) => count === 300))
      yield* TestClock.adjust("250 millis")
      yield* settle
      const b = yield* cluster.startPod(2)
      const counts: Array<number> = []
      for (let step = 0; step < 40; step++) { // 10 seconds
        yield* settle
        counts.push(yield* shardCount(b))
        yield* TestClock.adjust("250 millis")
      }
      yield* settle
      counts.push(yield* shardCount(b))
      const deltas = counts.map((count, i) => count - (counts[i - 1] ?? 0))
      expect(Math.max(...deltas)).toBeLessThanOrEqual(ManagerConfig.defaultValues.numberOfShards * 0.02)
      expect(counts.at(-1)).toBe(150)
      expect(yield* shardCount(a)).toBe(150)
      // 25 rounds of 6, one per rebalanceFollowUpInterval (250 ms): balanced after about 6 seconds.
      expect(counts.indexOf(150)).toBeLessThanOrEqual(26)
    }))

  it.effect("PodsHealth.local waits for a ping at most the manager's pingTimeout", () =>
    Effect.gen(function*() {
      const hangingPods = Layer.succeed(Pods.Pods, {
        assignShards: () => Effect.void,
        unassignShards: () => Effect.void,
        ping: () => Effect.never,
        sendAndGetState: () => Effect.never
      })
      const health = yield* Effect.provide(
        PodsHealth.PodsHealth,
        PodsHealth.local.pipe(
          Layer.provide(hangingPods),
          Layer.provide(ManagerConfig.withDefaults({ pingTimeout: Duration.seconds(1) }))
        )
      )
      const check = yield* Effect.fork(health.isAlive({ host: "localhost", port: 1 } as PodAddress.PodAddress))
      yield* TestClock.adjust("999 millis")
      expect(Option.isNone(yield* Fiber.poll(check))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(check)).toBe(false)
    }))
})

describe("ShardManager on a LeasedStorage (database leases)", () => {
  // Pod a holds every shard and renews their database leases at t = 10 s (to 40 s), then dies; b joins at
  // 31 s. The database refuses to move a shard before its lease + margin (40.5 s): the manager grants
  // again at that moment, not a rebalanceRetryInterval (10 s) after the refused round.
  it.scoped("a move the database refused is granted again as soon as the lease + margin has passed", () =>
    Effect.gen(function*() {
      const storage = yield* Storage.makeMemory
      const a = new PodAddressModule.PodAddress({ host: "a", port: 1 })
      const b = new PodAddressModule.PodAddress({ host: "b", port: 2 })
      const manager = yield* ShardManager.make.pipe(
        Effect.provideService(ManagerConfig.ManagerConfig, { ...ManagerConfig.defaultValues, numberOfShards: 4 }),
        Effect.provideService(Storage.Storage, storage),
        Effect.provide(Pods.noop),
        Effect.provide(Layer.succeed(PodsHealth.PodsHealth, { isAlive: () => Effect.succeed(false) }))
      )
      const owners = Effect.map(manager.getShardAssignments, (rows) => rows.map((row) => row.pod?.host ?? null))
      yield* manager.register(new Pod.Pod({ address: a, version: "1.0.0" }))
      yield* storage.registerPod(new Pod.Pod({ address: a, version: "1.0.0" }), "a-1") // its process's incarnation
      yield* eventually(Effect.map(owners, (all) => all.every((owner) => owner === "a")))
      yield* TestClock.adjust("10 seconds")
      const held = (yield* manager.getShardAssignments).map((row) => ({ shardId: row.shardId, epoch: row.epoch }))
      expect(yield* storage.renewShardLeases(a, "a-1", held, 30_000)).toEqual([1, 2, 3, 4])
      // a sends nothing more: the manager drops it at 30.5 s (registration + lease + margin).
      yield* TestClock.adjust("21 seconds")
      yield* settle
      expect((yield* manager.getPods).map((pod) => pod.host)).toEqual([])
      yield* manager.register(new Pod.Pod({ address: b, version: "1.0.0" }))
      yield* settle
      expect(yield* owners).toEqual([null, null, null, null])
      yield* TestClock.adjust("9400 millis") // 40.4 s
      yield* settle
      expect(yield* owners).toEqual([null, null, null, null])
      yield* TestClock.adjust("150 millis") // 40.55 s: the database lease + margin has passed (the round: 25 ms after)
      yield* eventually(Effect.map(owners, (all) => all.every((owner) => owner === "b")))
    }))
})
