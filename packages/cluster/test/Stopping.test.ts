// Stop paths on the live clock (TestClock wakes equal deadlines in reverse registration order, so races between
// timeouts only show here). Issue 10 #2 and #3.
import {
  InProcessTransport,
  ManagerConfig,
  Pods,
  PodsHealth,
  Sharding,
  ShardingConfig,
  ShardingException,
  ShardId,
  ShardManager,
  Storage
} from "@effect-cluster/cluster"
import { singlePod as singlePodWith } from "./utils/cluster.js"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Fiber, HashSet, Layer, Option } from "effect"
import { Counter, counterBehaviour, freshId, GetCount } from "./utils/counter.js"

const singlePod = (config: Partial<ShardingConfig.ShardingConfig> = {}) =>
  singlePodWith({ entityTerminationTimeout: Duration.millis(100), ...config })

const log: Array<string> = []
// An entity whose finalizer takes `ms` (longer than entityTerminationTimeout when ms > 100), and whose
// messages take `messageMs`.
const slowFinalizer = (ms: number, messageMs = 0) =>
  Sharding.registerEntity(Counter)(counterBehaviour({
    onMessage: () => messageMs > 0 ? Effect.sleep(Duration.millis(messageMs)) : Effect.void,
    onStop: (entityId) =>
      Effect.sync(() => log.push(`finalizing ${entityId}`)).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(ms))),
        Effect.zipRight(Effect.sync(() => log.push(`finalized ${entityId}`)))
      )
  }))

const shardOf = (sharding: Sharding.Sharding, entityId: string) =>
  HashSet.make(ShardId.make(sharding.getShardId(entityId).value))

describe("stopping entities (live clock, issue 10 #2)", () => {
  it.live("a message and a finalizer that overrun entityTerminationTimeout: the scope is closed, the confirmation waits for it", () =>
    Effect.gen(function*() {
      log.length = 0
      yield* Sharding.registerScoped
      yield* slowFinalizer(200, 150)
      const sharding = yield* Sharding.Sharding
      const busy = yield* Effect.fork(sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() })))
      yield* Effect.sleep("20 millis")
      yield* sharding.unassign(shardOf(sharding, "e"))
      expect(log).toEqual(["finalizing e", "finalized e"])
      expect(yield* sharding.localEntityCount).toBe(0)
      expect(yield* Fiber.join(busy)).toBe(0) // the message was not interrupted: its sender got the reply
    }).pipe(Effect.scoped, Effect.provide(singlePod())))

  it.live("a hand-off whose caller is interrupted still stops the entity and runs its finalizer", () =>
    Effect.gen(function*() {
      log.length = 0
      yield* Sharding.registerScoped
      yield* slowFinalizer(80)
      const sharding = yield* Sharding.Sharding
      yield* sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      const handoff = yield* Effect.fork(sharding.unassign(shardOf(sharding, "e")))
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(handoff) // e.g. the manager stopped mid-rebalance
      expect(log).toEqual(["finalizing e"])
      while ((yield* sharding.localEntityCount) > 0) yield* Effect.sleep("10 millis")
      expect(log).toEqual(["finalizing e", "finalized e"])
    }).pipe(Effect.scoped, Effect.provide(singlePod())))
})

describe("a hand-off whose caller is interrupted (live clock)", () => {
  // The manager's call may be interrupted (it stopped mid-rebalance, or a transport that does not run the
  // revocation in a fiber of its own gave up): only its wait ends. Were the shard stop hooks interrupted with
  // it, the workflow engine would cut its drain short, and the shard would stop being releasing (its release
  // confirmed by the next heartbeat) while the executions cut off may still be leaving.
  it.live("the shard stop hooks run on to their end, and the shard stays releasing until they have", () =>
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const shard = sharding.getShardId("e").value
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const stops: Array<string> = []
      yield* sharding.registerShardStop((shards, kind) =>
        shards.includes(shard)
          ? Effect.sync(() => stops.push(kind)).pipe(
            Effect.zipRight(Deferred.succeed(entered, undefined)),
            Effect.zipRight(Deferred.await(gate)),
            Effect.zipRight(Effect.sync(() => stops.push("stopped"))),
            Effect.onInterrupt(() => Effect.sync(() => stops.push("interrupted")))
          )
          : Effect.void
      )
      const handoff = yield* Effect.fork(sharding.unassign(HashSet.make(ShardId.make(shard))))
      yield* Deferred.await(entered)
      yield* Fiber.interrupt(handoff)
      yield* Effect.repeatN(Effect.yieldNow(), 100)
      expect(stops).toEqual(["handoff"])
      expect((yield* sharding.releasingShardEpochs).has(shard)).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      while ((yield* sharding.releasingShardEpochs).has(shard)) yield* Effect.sleep("10 millis")
      expect(stops).toEqual(["handoff", "stopped"])
    }).pipe(Effect.scoped, Effect.provide(singlePod({ entityTerminationTimeout: Duration.seconds(5) }))))
})

describe("a revocation repeated while the first one's stop still runs (live clock)", () => {
  // The manager gives up on a revocation after its unassignTimeout (10 s) and asks again later, at the same
  // epoch; the pod's stop may take longer (entityTerminationTimeout may reach 15 s with the default lease,
  // raised to fit, e.g., the cluster workflow engine's shutdownGracePeriod). Confirmed at once, the repeat
  // would let the manager hand the shard to its next owner while this pod still runs the shard's work.
  it.live("the repeat confirms only once the first stop has returned", () =>
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const shard = sharding.getShardId("e").value
      const epochs = new Map([[shard, (yield* sharding.servedShardEpochs).get(shard)!]])
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const stops: Array<string> = []
      yield* sharding.registerShardStop((shards, kind) =>
        Effect.sync(() => stops.push(`${kind} ${shards.join(",")}`)).pipe(
          Effect.zipRight(Deferred.succeed(entered, undefined)),
          Effect.zipRight(Deferred.await(gate)),
          Effect.zipRight(Effect.sync(() => stops.push("stopped")))
        )
      )
      const first = yield* Effect.fork(sharding.unassign(HashSet.make(ShardId.make(shard)), epochs))
      yield* Deferred.await(entered)
      // the manager's call timed out: it asks again
      const second = yield* Effect.fork(sharding.unassign(HashSet.make(ShardId.make(shard)), epochs))
      // (lets the repeat run as far as it can before the first stop returns)
      yield* Effect.repeatN(Effect.yieldNow(), 100)
      const early = yield* Fiber.poll(second)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      expect(Option.isNone(early)).toBe(true)
      expect(stops).toEqual([`handoff ${shard}`, "stopped"])
    }).pipe(Effect.scoped, Effect.provide(singlePod({ entityTerminationTimeout: Duration.seconds(12) }))))

  it.live("the pod leaving meanwhile unregisters only once that stop has returned", () =>
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const shard = sharding.getShardId("e").value
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const stops: Array<string> = []
      yield* sharding.registerShardStop((shards) =>
        shards.includes(shard)
          ? Deferred.succeed(entered, undefined).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.zipRight(Effect.sync(() => stops.push("revoked shard stopped")))
          )
          : Effect.void
      )
      const first = yield* Effect.fork(sharding.unassign(HashSet.make(ShardId.make(shard))))
      yield* Deferred.await(entered)
      const leaving = yield* Effect.fork(sharding.unregister)
      yield* Effect.repeatN(Effect.yieldNow(), 100)
      const early = yield* Fiber.poll(leaving)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(leaving)
      expect(Option.isNone(early)).toBe(true)
      expect(stops).toEqual(["revoked shard stopped"])
    }).pipe(Effect.scoped, Effect.provide(singlePod({ entityTerminationTimeout: Duration.seconds(12) }))))
})

// Singletons and entities whose clean-up takes 80 ms (< entityTerminationTimeout = 100 ms): a stop that handles
// them one after another lets clean-ups start only after others finished.
const slowSingletons = (names: ReadonlyArray<string>) =>
  Effect.forEach(names, (name) =>
    Sharding.registerSingleton(
      name,
      Effect.acquireRelease(Effect.void, () =>
        Effect.sync(() => log.push(`stopping ${name}`)).pipe(
          Effect.zipRight(Effect.sleep("80 millis")),
          Effect.zipRight(Effect.sync(() => log.push(`stopped ${name}`)))
        )).pipe(Effect.zipRight(Effect.never), Effect.scoped)
    ), { discard: true })

const allStartedBeforeAnyEnded = (started: string, ended: string) => {
  const firstEnd = log.findIndex((line) => line.startsWith(ended))
  const starts = log.filter((line) => line.startsWith(started)).length
  const startsBeforeFirstEnd = log.slice(0, firstEnd).filter((line) => line.startsWith(started)).length
  return { starts, startsBeforeFirstEnd, ends: log.filter((line) => line.startsWith(ended)).length }
}

describe("stopping singletons with entities (live clock, issue 10 #3)", () => {
  it.live("shutdown stops every singleton and entity together and returns once all have stopped", () =>
    Effect.gen(function*() {
      log.length = 0
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      yield* slowSingletons(["s1", "s2", "s3", "s4"])
      yield* slowFinalizer(80)
      yield* Effect.sleep("20 millis")
      for (const id of ["e1", "e2"]) yield* sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
      yield* sharding.unregister
      const singletons = allStartedBeforeAnyEnded("stopping", "stopped")
      expect(singletons).toEqual({ starts: 4, startsBeforeFirstEnd: 4, ends: 4 })
      // the entities' finalizers started before the first singleton finished: one stop, not two in a row
      const entities = log.slice(0, log.findIndex((line) => line.startsWith("stopped")))
        .filter((line) => line.startsWith("finalizing")).length
      expect(entities).toBe(2)
      expect(log.filter((line) => line.startsWith("finalized")).length).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(singlePod())))

  it.live("a hand-off stops the shard's singletons together and confirms once they have stopped", () =>
    Effect.gen(function*() {
      log.length = 0
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const names = ["s1", "s2", "s3", "s4", "s5", "s6"]
      yield* slowSingletons(names)
      yield* Effect.sleep("20 millis")
      const shards = HashSet.fromIterable(names.map((name) => ShardId.make(sharding.getShardId(name).value)))
      yield* sharding.unassign(shards)
      expect(allStartedBeforeAnyEnded("stopping", "stopped")).toEqual({ starts: 6, startsBeforeFirstEnd: 6, ends: 6 })
    }).pipe(Effect.scoped, Effect.provide(singlePod())))
})

describe("overlapping stops of one shard (live clock)", () => {
  // A shard revoked, granted back at the next epoch while its stop still runs, and revoked again: two stops
  // of it run at once. The second revocation, and a repeat of the first, confirm only once both have
  // returned, whichever ends first (a confirmation moves the shard: nothing of it may still run here).
  it.live("a revocation repeated, or a later one, waits for the earlier stop when the later one ended first", () =>
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const shard = sharding.getShardId("e").value
      const shardSet = HashSet.make(ShardId.make(shard))
      const epoch = (yield* sharding.servedShardEpochs).get(shard)!
      const entered = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const gates = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      let calls = 0
      yield* sharding.registerShardStop((shards) =>
        shards.includes(shard)
          ? Effect.suspend(() => {
            const call = calls++
            return Effect.zipRight(Deferred.succeed(entered[call]!, undefined), Deferred.await(gates[call]!))
          })
          : Effect.void
      )
      const first = yield* Effect.fork(sharding.unassign(shardSet, new Map([[shard, epoch]])))
      yield* Deferred.await(entered[0]!)
      yield* sharding.assign(shardSet, new Map([[shard, epoch + 1]]))
      const second = yield* Effect.fork(sharding.unassign(shardSet, new Map([[shard, epoch + 1]])))
      yield* Deferred.await(entered[1]!)
      yield* Deferred.succeed(gates[1]!, undefined)
      // the later stop's hook has returned: its revocation still waits for the earlier stop
      yield* Effect.repeatN(Effect.yieldNow(), 100)
      const secondEarly = yield* Fiber.poll(second)
      // the manager asks again for the first revocation: the first stop still runs
      const repeat = yield* Effect.fork(sharding.unassign(shardSet, new Map([[shard, epoch]])))
      yield* Effect.repeatN(Effect.yieldNow(), 100)
      const early = yield* Fiber.poll(repeat)
      yield* Deferred.succeed(gates[0]!, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      yield* Fiber.join(repeat)
      expect({ second: Option.isNone(secondEarly), repeat: Option.isNone(early) }).toEqual({ second: true, repeat: true })
    }).pipe(Effect.scoped, Effect.provide(singlePod({ entityTerminationTimeout: Duration.seconds(12) }))))
})

describe("the shards a hand-off releases (releasingShardEpochs, live clock)", () => {
  // Code that fences its own storage by shard epoch (the cluster workflow engine) records what its work on a
  // handed-off shard finishes while the pod's stop of the shard runs: the fence is still the pod's.
  it.live("a revoked shard is releasing while its stop runs, from the step it stops being served; overlapping stops each keep it", () =>
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const shard = sharding.getShardId("e").value
      const epoch = (yield* sharding.servedShardEpochs).get(shard)!
      const entered: Array<Deferred.Deferred<void>> = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const gates: Array<Deferred.Deferred<void>> = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      let calls = 0
      // (what the hook sees as it begins: the shard is no longer served, and releasing at the epoch held)
      const seen: Array<string> = []
      yield* sharding.registerShardStop((shards) =>
        Effect.gen(function*() {
          if (!shards.includes(shard)) return
          const call = calls++
          const served = yield* sharding.servedShardEpochs
          const releasing = yield* sharding.releasingShardEpochs
          seen.push(`${served.has(shard)} ${releasing.get(shard)}`)
          yield* Deferred.succeed(entered[call]!, undefined)
          yield* Deferred.await(gates[call]!)
        })
      )
      const revoke = (at: number) =>
        Effect.fork(sharding.unassign(HashSet.make(ShardId.make(shard)), new Map([[shard, at]])))
      expect((yield* sharding.releasingShardEpochs).size).toBe(0)
      const first = yield* revoke(epoch)
      yield* Deferred.await(entered[0]!)
      expect(yield* sharding.releasingShardEpochs).toEqual(new Map([[shard, epoch]]))
      // the shard comes back at the next epoch and is revoked again while the first stop still runs
      yield* sharding.assign(HashSet.make(ShardId.make(shard)), new Map([[shard, epoch + 1]]))
      expect((yield* sharding.servedShardEpochs).get(shard)).toBe(epoch + 1)
      const second = yield* revoke(epoch + 1)
      yield* Deferred.await(entered[1]!)
      expect(yield* sharding.releasingShardEpochs).toEqual(new Map([[shard, epoch + 1]]))
      // the first stop ends: the shard is still releasing, at the second's epoch
      yield* Deferred.succeed(gates[0]!, undefined)
      yield* Fiber.join(first)
      expect(yield* sharding.releasingShardEpochs).toEqual(new Map([[shard, epoch + 1]]))
      yield* Deferred.succeed(gates[1]!, undefined)
      yield* Fiber.join(second)
      expect((yield* sharding.releasingShardEpochs).size).toBe(0)
      expect(seen).toEqual([`false ${epoch}`, `false ${epoch + 1}`])
    }).pipe(Effect.scoped, Effect.provide(singlePod({ entityTerminationTimeout: Duration.seconds(12) }))))

  it.live("the pod leaving releases every shard it held in a hand-off, until its stop has returned", () =>
    Effect.gen(function*() {
      const sharding = yield* Sharding.Sharding
      yield* sharding.register
      const held = yield* sharding.servedShardEpochs
      const entered = yield* Deferred.make<ReadonlyMap<number, number>>()
      const gate = yield* Deferred.make<void>()
      yield* sharding.registerShardStop((_, kind) =>
        Effect.flatMap(sharding.releasingShardEpochs, (releasing) =>
          kind === "handoff"
            ? Effect.zipRight(Deferred.succeed(entered, releasing), Deferred.await(gate))
            : Effect.void)
      )
      const leaving = yield* Effect.fork(sharding.unregister)
      expect(yield* Deferred.await(entered)).toEqual(held)
      expect((yield* sharding.servedShardEpochs).size).toBe(0)
      expect(yield* sharding.releasingShardEpochs).toEqual(held)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(leaving)
      expect((yield* sharding.releasingShardEpochs).size).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(singlePod({ entityTerminationTimeout: Duration.seconds(12) }))))
})

describe("a revocation whose call failed while its stop still runs (live clock)", () => {
  // The manager gives up on a revocation after its unassignTimeout (here 100 ms) and keeps the shard with the
  // pod ("still owned"). The pod's stop runs on (its entityTerminationTimeout may be longer, to fit, e.g., the
  // workflow engine's shutdownGracePeriod). A heartbeat of the pod lists the shards it released: were the
  // shard listed while its stop still runs, the manager would take it as confirmed and hand the shard to its
  // next owner at once, beside the work still stopping here.
  it.live("the pod's heartbeat confirms the release only once that stop has returned", () =>
    Effect.gen(function*() {
      const transport = InProcessTransport.make()
      const withTransport = Layer.succeed(InProcessTransport.InProcessTransport, transport)
      const managerPods = transport.podsFor("manager")
      const pods: Pods.Pods = {
        ...managerPods,
        // as over the network: the pod's server runs the revocation in a fiber of its own, and the manager's
        // call gives up after its unassignTimeout (a failure leaves the shards with the pod)
        unassignShards: (pod, shards, epochs) =>
          Effect.flatMap(Effect.forkDaemon(managerPods.unassignShards(pod, shards, epochs)), Fiber.join).pipe(
            Effect.timeoutFail({
              duration: Duration.millis(100),
              onTimeout: () => new ShardingException.PodUnavailableException({ podAddress: pod })
            })
          )
      }
      yield* Layer.build(
        InProcessTransport.layerServeManager.pipe(
          Layer.provideMerge(ShardManager.live),
          Layer.provide(Layer.mergeAll(
            PodsHealth.noop,
            Layer.succeed(Pods.Pods, pods),
            ManagerConfig.withDefaults({ numberOfShards: 2, rebalanceRate: 1 }),
            Storage.memory
          )),
          Layer.provide(withTransport)
        )
      )
      const podAt = (port: number) =>
        Effect.map(
          Layer.build(
            InProcessTransport.layerPod({
              numberOfShards: 2,
              shardingPort: port,
              entityTerminationTimeout: Duration.seconds(5)
            }).pipe(Layer.provide(withTransport))
          ),
          Context.get(Sharding.Sharding)
        )
      const a = yield* podAt(1)
      const entered = yield* Deferred.make<ReadonlyArray<number>>()
      const gate = yield* Deferred.make<void>()
      const stops: Array<string> = []
      yield* a.registerShardStop((shards, kind) =>
        Effect.sync(() => stops.push(`${kind} ${shards.join(",")}`)).pipe(
          Effect.zipRight(Deferred.succeed(entered, shards)),
          Effect.zipRight(Deferred.await(gate)),
          Effect.zipRight(Effect.sync(() => stops.push("stopped"))),
          Effect.onInterrupt(() => Effect.sync(() => stops.push("interrupted")))
        )
      )
      yield* a.register
      const held = (pod: Sharding.Sharding) => Effect.map(pod.getAssignedShardIds, (set) => Array.from(set, (s) => s.value))
      while ((yield* held(a)).length < 2) yield* Effect.sleep("10 millis")
      const b = yield* podAt(2)
      yield* b.register // a round moves one shard from a to b: a's stop blocks, the manager's call fails
      const [moved] = yield* Deferred.await(entered)
      yield* Effect.sleep("300 millis") // the manager's call has failed meanwhile
      expect(stops).toEqual([`handoff ${moved}`])
      yield* b.heartbeat
      expect(yield* held(b)).toEqual([]) // the failed call left the shard with a
      // a's heartbeat while its stop still runs: the shard must stay a's (no other owner yet)
      yield* a.heartbeat
      yield* Effect.sleep("300 millis")
      yield* b.heartbeat
      expect(yield* held(b)).toEqual([])
      // once the stop has returned, a heartbeat confirms it and the shard moves
      yield* Deferred.succeed(gate, undefined)
      while (stops.length < 2) yield* Effect.sleep("10 millis")
      yield* a.heartbeat
      for (let i = 0; i < 100 && (yield* held(b)).length === 0; i++) {
        yield* Effect.sleep("10 millis")
        yield* b.heartbeat
      }
      expect(yield* held(b)).toEqual([moved])
    }).pipe(Effect.scoped))
})

describe("a revocation that comes when the pod's lease ends within entityTerminationTimeout (live clock)", () => {
  // A pod stops the shards it holds from lease end − entityTerminationTimeout when it could not renew, so
  // that all has stopped by the lease end (after which a silent pod's shards move). A hand-off's stop is bounded
  // by entityTerminationTimeout from the revocation: one that comes later than that point (a grant and a
  // revocation that crossed the watchdog's stop, or a watchdog late while an earlier stop ran) would let the
  // stop hooks, told "handoff" (the workflow engine drains for its grace period), run past the lease end. Such a
  // shard is stopped as the watchdog would have: lost (executions cut off at once).
  it.live("the shard is stopped as lost, and the revocation returns before the lease end", () =>
    Effect.gen(function*() {
      const transport = InProcessTransport.make()
      const withTransport = Layer.succeed(InProcessTransport.InProcessTransport, transport)
      yield* Layer.build(
        InProcessTransport.layerManager({
          numberOfShards: 2,
          leaseDuration: Duration.millis(1200),
          leaseMargin: Duration.millis(100)
        }).pipe(Layer.provide(Layer.merge(withTransport, Storage.memory)))
      )
      const a = yield* Effect.map(
        Layer.build(
          InProcessTransport.layerPod({
            numberOfShards: 2,
            shardingPort: 1,
            leaseDuration: Duration.millis(1200),
            leaseRenewalInterval: Duration.millis(300),
            leaseMargin: Duration.millis(100),
            entityTerminationTimeout: Duration.millis(500)
          }).pipe(Layer.provide(withTransport))
        ),
        Context.get(Sharding.Sharding)
      )
      const stops: Array<string> = []
      const start = Date.now()
      yield* a.registerShardStop((shards, kind) =>
        Effect.sync(() => stops.push(`${kind} ${shards.join(",")}`)).pipe(
          // a hand-off drains (until the pod's entityTerminationTimeout ends it); a lost shard stops at once
          Effect.zipRight(kind === "handoff" ? Effect.never : Effect.void)
        )
      )
      yield* a.register
      while ((yield* a.servedShardEpochs).size < 2) yield* Effect.sleep("10 millis")
      const epochs = yield* a.servedShardEpochs
      // cut off from the manager: the lease ends 1200 ms after this last renewal was sent
      yield* a.heartbeat
      yield* transport.partitionFromManager(a.podAddress)
      const leaseEnd = Date.now() - start + 1200
      // the watchdog stops both shards at lease end − 500 ms
      while (HashSet.size(yield* a.getAssignedShardIds) > 0) yield* Effect.sleep("10 millis")
      expect(stops).toEqual(["lost 1,2"])
      // then shard 1 is granted and revoked again, less than 500 ms before the lease end
      yield* a.assign(HashSet.make(ShardId.make(1)), new Map([[1, epochs.get(1)!]]))
      yield* a.unassign(HashSet.make(ShardId.make(1)), new Map([[1, epochs.get(1)!]]))
      const returned = Date.now() - start
      expect(stops).toEqual(["lost 1,2", "lost 1"])
      expect(returned).toBeLessThan(leaseEnd) // (a hand-off's stop would have run 500 ms from the revocation)
      expect((yield* a.releasingShardEpochs).size).toBe(0)
    }).pipe(Effect.scoped))
})
