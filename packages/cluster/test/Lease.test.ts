import { describe, expect, it } from "@effect/vitest"
import { Storage } from "@effect-cluster/cluster"
import { Clock, Duration, Effect, TestClock } from "effect"
import { eventually, makeTestCluster, settle } from "./utils/cluster.js"
import { Counter, freshId, GetCount } from "./utils/counter.js"
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
}

/**
 * A cluster of 30 shards (its manager started) whose pods renew their leases in the manager's in-memory
 * storage, whose "database clock" is the TestClock, as is the pods' monotonic clock. Every renewal that
 * answered is recorded; after `failRenewals()` every renewal fails as an unreachable database's would.
 */
const renewingInTheDatabase = Effect.gen(function*() {
  const observer = new Observer()
  const storage = yield* Storage.makeMemory
  const renewals: Array<Renewal> = []
  let failing = false
  let dying = false
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
        const renewed = yield* storage.renewShardLeases(address, incarnation, held, leaseMillis)
        renewals.push({ port: address.port, sentAt, held: held.length, renewed: renewed.length })
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
    dieAtNextRenewal: () => void (dying = true)
  }
})

/** When the last renewal of `port`'s leases that `which` accepts was sent (undefined: none). */
const lastRenewal = (renewals: ReadonlyArray<Renewal>, port: number, which: (renewal: Renewal) => boolean) =>
  renewals.filter((renewal) => renewal.port === port && which(renewal)).at(-1)?.sentAt

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
