import { describe, expect, it } from "@effect/vitest"
import { ShardId, Sharding, Storage } from "@effect-cluster/cluster"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, HashSet, Option, TestClock } from "effect"
import { eventually, makeTestCluster, settle, twoPodsAndAMisdirectedShard } from "./utils/cluster.js"
import { Counter, counterBehaviour, freshId, GetCount } from "./utils/counter.js"
import { Observer } from "./utils/observer.js"

describe("a pod's lease (issue 10, also seen)", () => {
  it.scoped("honours a shorter lease granted by the manager: it renews in time and keeps its entities", () =>
    Effect.gen(function*() {
      const observer = new Observer()
      const cluster = yield* makeTestCluster({
        numberOfShards: 30,
        // the manager grants 9 s leases; the pod is configured for 30 s and renews every 10 s
        manager: { rebalanceRate: 1, leaseDuration: Duration.seconds(9), leaseMargin: Duration.seconds(2) },
        pod: { entityTerminationTimeout: Duration.seconds(1), entityMaxIdleTime: Duration.minutes(10) }
      })
      yield* cluster.startManager
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      yield* a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      }
      // never stopped for want of a renewal
      expect(observer.events).toEqual(["start e@1"])
    }))
})

/** One renewal of a pod's shard leases in the database that answered. */
interface Renewal {
  readonly port: number
  /** When the pod sent it (the TestClock). */
  readonly sentAt: number
  readonly held: number
  readonly renewed: number
  /** The shards renewed. */
  readonly shards: ReadonlyArray<number>
}

/**
 * A cluster of 30 shards (its manager started) whose pods renew their leases in the manager's in-memory
 * storage, whose "database clock" is the TestClock, as is the pods' monotonic clock. Every renewal that
 * answered is recorded; after `failRenewals()` every renewal fails as an unreachable database's would;
 * after `refuseRenewalOf(shards)` the database no longer renews those shards (the renewed list leaves them
 * out, as when they were moved or their lease lapsed there).
 */
const renewingInTheDatabase = Effect.gen(function*() {
  const observer = new Observer()
  const storage = yield* Storage.makeMemory
  const renewals: Array<Renewal> = []
  let failing = false
  let dying = false
  const refused = new Set<number>()
  const podLeases: Storage.LeasedStorage = {
    ...storage,
    renewShardLeases: (address, incarnation, held, leaseMillis) =>
      Effect.gen(function*() {
        const sentAt = yield* Clock.currentTimeMillis
        if (failing) return yield* new Storage.StorageException({ reason: "the database is unreachable" })
        if (dying) {
          dying = false
          return yield* Effect.dieMessage("a bug in the storage (test)")
        }
        const asked = refused.size === 0 ? held : held.filter(({ shardId }) => !refused.has(shardId))
        const renewed = yield* storage.renewShardLeases(address, incarnation, asked, leaseMillis)
        renewals.push({ port: address.port, sentAt, held: held.length, renewed: renewed.length, shards: renewed })
        return renewed
      })
  }
  const cluster = yield* makeTestCluster({
    numberOfShards: 30,
    storage,
    podLeases,
    manager: { rebalanceRate: 1 },
    pod: { entityMaxIdleTime: Duration.minutes(60) }
  })
  yield* cluster.startManager
  return {
    observer,
    cluster,
    renewals,
    failRenewals: () => void (failing = true),
    refuseRenewalOf: (...shards: ReadonlyArray<number>) => void shards.forEach((shard) => refused.add(shard)),
    dieAtNextRenewal: () => void (dying = true)
  }
})

/** When the last renewal of `port`'s leases that `which` accepts was sent (undefined: none). */
const lastRenewal = (renewals: ReadonlyArray<Renewal>, port: number, which: (renewal: Renewal) => boolean) =>
  renewals.filter((renewal) => renewal.port === port && which(renewal)).at(-1)?.sentAt

/** A stop hook for `shard` (stops of `kind`, or any) taking `millis`; it records "stopped" or "cut short". */
const slowStopHook = (sharding: Sharding.Sharding, shard: number, millis: number, kind?: Sharding.ShardStopKind) =>
  Effect.gen(function*() {
    const hook: Array<string> = []
    // The test's end lets a hook still running return (its sleep, interruptible, loses the race), so that a
    // test whose stop is not cut short as it should be fails on its assertion rather than waiting for the
    // hook as its scope closes (a hook in an uninterruptible stop cannot be interrupted, only released).
    const release = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
    yield* sharding.registerShardStop((shards, stopKind) =>
      shards.includes(shard) && (kind === undefined || stopKind === kind)
        ? Effect.race(Effect.interruptible(Effect.sleep(Duration.millis(millis))), Deferred.await(release)).pipe(
          Effect.zipRight(Effect.sync(() => void hook.push("stopped"))),
          Effect.onInterrupt(() => Effect.sync(() => void hook.push("cut short")))
        )
        : Effect.void
    )
    return hook
  })

/**
 * Pod 1 alone, holding the 30 shards, the manager stopped: shard 7's database renewal is refused, and the clock
 * moves to the moment its watchdog drops it (lease end - entityTerminationTimeout), its lost stop hook taking
 * `hookMillis`.
 */
const lapsedShard = (hookMillis: number) =>
  Effect.gen(function*() {
    const { cluster, refuseRenewalOf, renewals } = yield* renewingInTheDatabase
    const lapsed = 7
    const a = yield* cluster.startPod(1)
    yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
    const hook = yield* slowStopHook(a.sharding, lapsed, hookMillis, "lost")
    yield* cluster.stopManager
    for (let t = 0; t < 40; t++) {
      yield* TestClock.adjust("1 second")
      yield* settle
    }
    refuseRenewalOf(lapsed)
    const end = lastRenewal(renewals, 1, (renewal) => renewal.shards.includes(lapsed))! + 30_000
    const now = yield* Clock.currentTimeMillis
    yield* TestClock.adjust(Duration.millis(end - 3_000 - now))
    yield* settle
    expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(29)
    return { a, hook }
  })

describe("a pod that renews its leases in the database (Storage.PodLeases)", () => {
  it.scoped("a renewal that dies (a storage defect) does not end the renewals: the pod keeps its shards without a manager", () =>
    Effect.gen(function*() {
      const { cluster, dieAtNextRenewal, observer, renewals } = yield* renewingInTheDatabase
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      yield* cluster.stopManager
      dieAtNextRenewal()
      const diedAt = yield* Clock.currentTimeMillis
      // Two leases without a manager, the first renewal after the manager stopped dying.
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      }
      expect(lastRenewal(renewals, 1, (renewal) => renewal.renewed === 30)).toBeGreaterThan(diedAt + 30_000)
    }))

  it.scoped("keeps its shards and entities while the manager is stopped; once its database renewals fail, stops them at lease end from the last renewal's send", () =>
    Effect.gen(function*() {
      const { observer, cluster, renewals, failRenewals } = yield* renewingInTheDatabase
      const lease = 30_000
      const termination = 3_000
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      yield* a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      yield* cluster.stopManager
      // Four leases without a manager: the pod renews in the database and keeps everything.
      for (let t = 0; t < 4 * lease / 1000; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      }
      yield* a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
      expect(observer.events).toEqual(["start e@1"])
      // the last renewal of all its shards
      const lastRenewalSentAt = lastRenewal(renewals, 1, (renewal) => renewal.renewed === renewal.held)
      expect(lastRenewalSentAt).toBeGreaterThan(3 * lease)
      // The database fails too: the pod holds its shards until the last successful renewal's send + lease,
      // and stops them (entities included) `entityTerminationTimeout` before that.
      failRenewals()
      const stopAt = lastRenewalSentAt! + lease - termination
      const now = yield* Clock.currentTimeMillis
      yield* TestClock.adjust(Duration.millis(stopAt - 1 - now))
      yield* settle
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      expect(observer.events).toEqual(["start e@1"])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(0)
      expect(observer.events).toEqual(["start e@1", "stop e@1"])
    }))
  it.scoped("shards whose database leases end at different times each begin stopping at their own time, not once an earlier shard's slow stop has returned", () =>
    Effect.gen(function*() {
      const { cluster, refuseRenewalOf, renewals } = yield* renewingInTheDatabase
      const lease = 30_000
      const termination = 3_000 // entityTerminationTimeout (the cluster's)
      const renewal = 2_000 // a renewal every 2 s: two shards' lease ends can fall within one termination timeout
      // Entities whose finalizer takes 2.9 s, just within entityTerminationTimeout: when each one's ended.
      const stoppedAt = new Map<string, number>()
      const slowStops = Sharding.registerEntity(Counter)(counterBehaviour({
        onStop: (entityId) =>
          Effect.zipRight(
            Effect.sleep(Duration.millis(termination - 100)),
            Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => void stoppedAt.set(entityId, now)))
          )
      }))
      const a = yield* cluster.startPod(1, slowStops, { leaseRenewalInterval: Duration.millis(renewal) })
      yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
      const shardOf = (entityId: string) => a.sharding.getShardId(entityId).value
      const first = "x"
      let second = "y0"
      for (let i = 1; shardOf(second) === shardOf(first); i++) second = `y${i}`
      for (const entityId of [first, second]) {
        yield* a.sharding.messenger(Counter).send(entityId)(new GetCount({ messageId: freshId() }))
      }
      // Two leases without a manager: only the database renewals keep the shards.
      yield* cluster.stopManager
      for (let t = 0; t < 2 * lease / 1000; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      }
      const renewedAt = (shard: number) => lastRenewal(renewals, 1, (renewal) => renewal.shards.includes(shard))!
      // The database stops renewing the first entity's shard now, the second's one renewal later.
      refuseRenewalOf(shardOf(first))
      const firstEnd = renewedAt(shardOf(first)) + lease
      while (renewedAt(shardOf(second)) + lease <= firstEnd) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }
      refuseRenewalOf(shardOf(second))
      const secondEnd = renewedAt(shardOf(second)) + lease
      // (the second lease ends while the first shard's stop may still run)
      expect(secondEnd - firstEnd).toBeGreaterThan(0)
      expect(secondEnd - firstEnd).toBeLessThan(termination)
      // Nothing has stopped before the first shard's stop is due.
      const now = yield* Clock.currentTimeMillis
      yield* TestClock.adjust(Duration.millis(firstEnd - termination - 1 - now))
      yield* settle
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(30)
      expect(stoppedAt.size).toBe(0)
      // By each shard's lease end (the pod's clock), its entity has stopped (its finalizer has ended).
      yield* TestClock.adjust(Duration.millis(termination + 1))
      yield* settle
      const stoppedByFirstEnd = new Map(stoppedAt)
      yield* TestClock.adjust(Duration.millis(secondEnd - firstEnd))
      yield* settle
      const stoppedBySecondEnd = new Map(stoppedAt)
      // (a stop still running ends before the test does: the pod's scope waits for it on the TestClock)
      yield* TestClock.adjust(Duration.millis(2 * termination))
      yield* settle
      expect(Array.from(yield* a.sharding.getAssignedShardIds).length).toBe(28)
      expect({ byFirstEnd: Array.from(stoppedByFirstEnd.keys()), bySecondEnd: Array.from(stoppedBySecondEnd.keys()) })
        .toEqual({ byFirstEnd: [first], bySecondEnd: [first, second] })
      // each began stopping at its own time: lease end minus entityTerminationTimeout
      expect(stoppedAt.get(first)).toBe(firstEnd - 100)
      expect(stoppedAt.get(second)).toBe(secondEnd - 100)
    }))

  it.scoped("a pod leaving while the watchdog's stop of a lapsed shard runs leaves once that stop (its stop hook) has returned", () =>
    Effect.gen(function*() {
      // the work of its own the pod stops with the lapsed shard: 2.9 s, within entityTerminationTimeout
      const { a, hook } = yield* lapsedShard(2_900)
      // a second into that stop, the pod leaves
      yield* TestClock.adjust("1 second")
      yield* settle
      const leaving = yield* Effect.fork(a.leave)
      yield* settle
      expect(yield* Fiber.poll(leaving)).toEqual(Option.none())
      yield* TestClock.adjust("2 seconds")
      yield* settle
      yield* Fiber.join(leaving)
      expect(hook).toEqual(["stopped"])
    }))

  it.scoped("the watchdog's stop of a lapsed shard cuts a stop hook that overruns at entityTerminationTimeout", () =>
    Effect.gen(function*() {
      // a hook that would take 10 s: longer than entityTerminationTimeout (3 s)
      const { hook } = yield* lapsedShard(10_000)
      yield* TestClock.adjust(Duration.millis(3_000 - 1))
      yield* settle
      expect(hook).toEqual([])
      // at the lease end: cut short (the stop ran uninterruptibly before: its timeout waited for the hook)
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      expect(hook).toEqual(["cut short"])
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(hook).toEqual(["cut short"])
    }))

  it.scoped("a pod cut off from the manager but renewing in the database: the manager moves its shards only once that lease has been over for the margin", () =>
    Effect.gen(function*() {
      const { observer, cluster, renewals } = yield* renewingInTheDatabase
      const lease = 30_000
      const margin = 500 // the manager's default leaseMargin
      const a = yield* cluster.startPod(1, observer.counterOn(1))
      const b = yield* cluster.startPod(2, observer.counterOn(2))
      const held = (pod: typeof a) => Effect.map(pod.sharding.getAssignedShardIds, (s) => Array.from(s).length)
      yield* eventually(Effect.map(Effect.all([held(a), held(b)]), ([x, y]) => x === 15 && y === 15))
      const ids = Array.from({ length: 20 }, (_, i) => `e${i}`)
      for (const id of ids) yield* a.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() }))
      expect(observer.where("e0").length).toBe(1)
      yield* cluster.transport.partitionFromManager(a.address)
      let removedAt: number | undefined
      let movedAt: number | undefined
      for (let t = 0; t < 150 && movedAt === undefined; t++) {
        yield* TestClock.adjust("1 second")
        yield* settle
        const now = yield* Clock.currentTimeMillis
        const known = yield* cluster.managerInstance()!.getPods
        if (removedAt === undefined && !known.some((pod) => pod.port === 1)) removedAt = now
        if ((yield* held(b)) > 15) {
          movedAt = now
          // Pod A had stopped everything by then.
          expect(yield* held(a)).toBe(0)
        }
        expect(observer.violations).toEqual([])
      }
      expect(removedAt).toBeDefined()
      expect(movedAt).toBeDefined()
      // The manager declared A dead first; A renewed in the database until then; the shards moved only once
      // the last of those leases had been over for the margin.
      const renewedUntil = lastRenewal(renewals, 1, (renewal) => renewal.renewed > 0)
      expect(movedAt!).toBeGreaterThan(removedAt!)
      expect(movedAt!).toBeGreaterThanOrEqual(renewedUntil! + lease + margin)
      expect(observer.violations).toEqual([])
    }))
})

describe("a grant that shows a shard this pod holds on another pod", () => {
  it.scoped("stops the shard as lost, and the pod leaving meanwhile waits for that stop (its stop hook)", () =>
    Effect.gen(function*() {
      const termination = 3_000
      const { a, held, misdirect, shard } = yield* twoPodsAndAMisdirectedShard({
        numberOfShards: 30,
        manager: { rebalanceRate: 1 },
        pod: { entityTerminationTimeout: Duration.millis(termination) }
      })
      // the work of its own pod 1 stops with that shard: 2.9 s, within entityTerminationTimeout
      const hook = yield* slowStopHook(a.sharding, shard, termination - 100, "lost")
      // A misdirected push: pod 1 takes pod 2's shard at pod 2's epoch (not below the route it knows).
      yield* misdirect
      expect(yield* held(a)).toContain(shard)
      // Its next heartbeat's grant has the shard on pod 2 at that epoch: pod 1 stops it as lost.
      yield* Effect.fork(a.sharding.heartbeat)
      yield* settle
      expect(yield* held(a)).not.toContain(shard)
      expect(hook).toEqual([])
      // Pod 1 leaves while that stop runs: it leaves once the stop has returned, its hook not cut short.
      const leaving = yield* Effect.fork(a.leave)
      yield* settle
      expect(yield* Fiber.poll(leaving)).toEqual(Option.none())
      yield* TestClock.adjust(Duration.millis(termination))
      yield* settle
      yield* Fiber.join(leaving)
      expect(hook).toEqual(["stopped"])
    }))
})

/** Pod 1 alone, holding the 30 shards, with a stop hook for shard 7 (stops of `kind`, or any) taking `hookMillis`. */
const onePodWithAStopHook = (termination: number, hookMillis: number, kind?: Sharding.ShardStopKind) =>
  Effect.gen(function*() {
    const cluster = yield* makeTestCluster({
      numberOfShards: 30,
      manager: { rebalanceRate: 1 },
      pod: { entityTerminationTimeout: Duration.millis(termination) }
    })
    yield* cluster.startManager
    const a = yield* cluster.startPod(1)
    yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => Array.from(s).length === 30))
    const hook = yield* slowStopHook(a.sharding, 7, hookMillis, kind)
    return { a, hook }
  })

describe("a pod leaving from an uninterruptible region (the Sharding layer's finalizer)", () => {
  it.scoped("cuts a stop hook that overruns at entityTerminationTimeout", () =>
    Effect.gen(function*() {
      const termination = 3_000
      const { a, hook } = yield* onePodWithAStopHook(termination, 10_000)
      const leaving = yield* Effect.fork(Effect.uninterruptible(a.leave))
      yield* settle
      yield* TestClock.adjust(Duration.millis(termination - 1))
      yield* settle
      expect(hook).toEqual([])
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      expect(hook).toEqual(["cut short"])
      yield* Fiber.join(leaving)
    }))
})

// The manager's revocation stops the shards in a daemon fiber of its own, interruptible: a caller in an
// uninterruptible region (a handler run detached, a finalizer) does not make the stop's timeouts wait for what
// overruns. Before, the stop ran in the caller's region, and a hook of 10 s held the revocation for 10 s.
const revokedWithAnOverrunningHook = (termination: number, hookMillis: number) =>
  Effect.gen(function*() {
    const { a, hook } = yield* onePodWithAStopHook(termination, hookMillis, "handoff")
    const revocation = yield* Effect.fork(Effect.uninterruptible(a.sharding.unassign(HashSet.make(ShardId.make(7)))))
    return { a, hook, revocation }
  })

describe("a revocation asked from an uninterruptible region", () => {
  it.scoped("cuts a stop hook that overruns at entityTerminationTimeout, then confirms", () =>
    Effect.gen(function*() {
      const termination = 3_000
      const { a, hook, revocation } = yield* revokedWithAnOverrunningHook(termination, 10_000)
      yield* settle
      yield* TestClock.adjust(Duration.millis(termination - 1))
      yield* settle
      expect(hook).toEqual([])
      expect(yield* Fiber.poll(revocation)).toEqual(Option.none())
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      expect(hook).toEqual(["cut short"])
      expect(Exit.isSuccess(yield* Fiber.await(revocation))).toBe(true)
      expect(yield* a.sharding.getAssignedShardIds).not.toContainEqual(ShardId.make(7))
    }))

  it.scopedLive("cuts it on the live clock too", () =>
    Effect.gen(function*() {
      // a hook of a minute, cut at 300 ms: the revocation returns (joined, not slept for) with the hook cut short
      const { hook, revocation } = yield* revokedWithAnOverrunningHook(300, 60_000)
      const exit = yield* Fiber.await(revocation).pipe(Effect.timeoutOption("20 seconds"))
      expect({ confirmed: Option.isSome(exit) && Exit.isSuccess(exit.value), hook })
        .toEqual({ confirmed: true, hook: ["cut short"] })
    }))
})
