/**
 * The storage contract, run on every storage: in memory, a SQLite file, PostgreSQL.
 */
import { Pod, PodAddress, ShardId, Storage } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option, Stream } from "effect"
import { freshStorage, storageCases } from "./utils/storages.js"

const address = (port: number) => PodAddress.make("host", port)
const pod = (port: number, version = "1.0.0") => Pod.make(address(port), version)
const shard = (value: number) => ShardId.make(value)

const owners = (assignments: HashMap.HashMap<ShardId.ShardId, Option.Option<PodAddress.PodAddress>>) =>
  Array.from(assignments)
    .flatMap(([shardId, owner]) => Option.isSome(owner) ? [[shardId.value, owner.value.port] as const] : [])
    .sort((a, b) => a[0] - b[0])

const assign = (entries: ReadonlyArray<readonly [number, number | null]>) =>
  HashMap.fromIterable(entries.map(([s, port]) => [shard(s), port === null ? Option.none() : Option.some(address(port))] as const))

const epochsOf = (entries: ReadonlyArray<readonly [number, number]>) =>
  HashMap.fromIterable(entries.map(([s, epoch]) => [shard(s), epoch] as const))

const sortedEpochs = (epochs: HashMap.HashMap<ShardId.ShardId, number>) =>
  Array.from(epochs, ([shardId, epoch]) => [shardId.value, epoch] as const).sort((a, b) => a[0] - b[0])

for (const storageCase of storageCases) {
  if (storageCase.skip !== undefined) continue
  describe(`Storage contract [${storageCase.name}]`, () => {
    it.scoped("keeps what was saved: pods, owners, epochs (which never go down)", () =>
      Effect.gen(function*() {
        const storage = yield* freshStorage(storageCase)
        yield* storage.savePods(HashMap.fromIterable([[address(1), pod(1)], [address(2), pod(2, "1.1.0")]]))
        yield* storage.saveAssignments(assign([[1, 1], [2, 2], [3, null]]))
        yield* storage.saveEpochs(epochsOf([[1, 3], [2, 5]]))
        yield* storage.saveEpochs(epochsOf([[1, 2], [2, 6]]))
        const pods = yield* storage.getPods
        expect(Array.from(HashMap.values(pods), (p) => `${p.address.port}@${p.version}`).sort()).toEqual(["1@1.0.0", "2@1.1.0"])
        expect(owners(yield* storage.getAssignments)).toEqual([[1, 1], [2, 2]])
        expect(sortedEpochs(yield* storage.getEpochs)).toEqual([[1, 3], [2, 6]])
        // Pods not in the next map are removed.
        yield* storage.savePods(HashMap.fromIterable([[address(2), pod(2, "1.2.0")]]))
        expect(Array.from(HashMap.values(yield* storage.getPods), (p) => `${p.address.port}@${p.version}`)).toEqual(["2@1.2.0"])
      }))

    it.scoped("saveAll writes pods, epochs and assignments together", () =>
      Effect.gen(function*() {
        const storage = yield* freshStorage(storageCase)
        yield* storage.saveAll({
          pods: HashMap.fromIterable([[address(1), pod(1)]]),
          epochs: epochsOf([[7, 1]]),
          assignments: assign([[7, 1]])
        })
        expect(HashMap.size(yield* storage.getPods)).toBe(1)
        expect(owners(yield* storage.getAssignments)).toEqual([[7, 1]])
        expect(sortedEpochs(yield* storage.getEpochs)).toEqual([[7, 1]])
        const first = yield* Stream.runHead(storage.assignmentsStream)
        expect(owners(Option.getOrThrow(first))).toEqual([[7, 1]])
      }))

    it.scoped("a pod process is an incarnation: a restarted process holds none of the shards of the earlier one", () =>
      Effect.gen(function*() {
        const storage = yield* freshStorage(storageCase)
        yield* storage.registerPod(pod(1), "run-a")
        yield* storage.saveEpochs(epochsOf([[1, 1], [2, 1]]))
        yield* storage.saveAssignments(assign([[1, 1], [2, 1]]))
        expect(yield* storage.renewPodLease(address(1), "run-a")).toEqual(
          Option.some([{ shardId: 1, epoch: 1 }, { shardId: 2, epoch: 1 }])
        )
        expect(yield* storage.holdsShard(address(1), "run-a", 1, 1)).toBe(true)
        expect(yield* storage.holdsShard(address(1), "run-a", 1, 0)).toBe(false)
        // Same host:port, new process.
        yield* storage.registerPod(pod(1), "run-b")
        expect(yield* storage.renewPodLease(address(1), "run-a")).toEqual(Option.none())
        expect(yield* storage.renewPodLease(address(1), "run-b")).toEqual(Option.some([]))
        expect(yield* storage.holdsShard(address(1), "run-a", 1, 1)).toBe(false)
        // Re-saving the same owner keeps the shard with the incarnation it was given to.
        yield* storage.saveAssignments(assign([[1, 1], [2, 1]]))
        expect(yield* storage.renewPodLease(address(1), "run-b")).toEqual(Option.some([]))
        // Given again (a new epoch, unassigned then assigned), the shard goes to the current incarnation.
        yield* storage.saveAssignments(assign([[1, null]]))
        yield* storage.saveEpochs(epochsOf([[1, 2]]))
        yield* storage.saveAssignments(assign([[1, 1]]))
        expect(yield* storage.renewPodLease(address(1), "run-b")).toEqual(Option.some([{ shardId: 1, epoch: 2 }]))
        // A removed pod renews nothing.
        yield* storage.savePods(HashMap.empty())
        expect(yield* storage.renewPodLease(address(1), "run-b")).toEqual(Option.none())
      }))

    it.scoped("pods renew shard leases by compare-and-set on epoch and incarnation; a shard moves only once its lease is over or released", () =>
      Effect.gen(function*() {
        const storage = yield* freshStorage(storageCase)
        const long = { durationMillis: 3_600_000, marginMillis: 1_000 }
        const bothPods = HashMap.fromIterable([[address(1), pod(1)], [address(2), pod(2)]])
        yield* storage.registerPod(pod(1), "run-a")
        yield* storage.registerPod(pod(2), "run-b")
        const granted = yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 1], [2, 1]]),
          assignments: assign([[1, 1], [2, 2]]),
          lease: long
        })
        expect(granted.refused).toEqual([])
        // The current epoch and incarnation: renewed.
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 1, epoch: 1 }], 60_000)).toEqual([1])
        // A stale (or unknown) epoch, another incarnation, another pod's shard: refused.
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 1, epoch: 0 }], 60_000)).toEqual([])
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 1, epoch: 2 }], 60_000)).toEqual([])
        expect(yield* storage.renewShardLeases(address(1), "run-other", [{ shardId: 1, epoch: 1 }], 60_000)).toEqual([])
        expect(
          yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 1, epoch: 1 }, { shardId: 2, epoch: 1 }], 60_000)
        ).toEqual([1])

        // While pod 1's lease runs, the manager cannot give shard 1 to pod 2: owner and epoch stay as they were.
        const early = yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 2], [2, 1]]),
          assignments: assign([[1, 2], [2, 2]]),
          lease: long
        })
        expect(early.refused).toEqual([1])
        // When it may move, on the database's clock: its lease (renewed for 60 s just now) + the margin.
        expect(early.retryInMillis).toBeGreaterThan(59_000)
        expect(early.retryInMillis).toBeLessThanOrEqual(61_000)
        expect(granted.retryInMillis).toBeUndefined()
        expect(owners(yield* storage.getAssignments)).toEqual([[1, 1], [2, 2]])
        expect(sortedEpochs(yield* storage.getEpochs)).toEqual([[1, 1], [2, 1]])
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 1, epoch: 1 }], 60_000)).toEqual([1])
        // Unassigning it (the pod was declared dead) keeps the lease: still no move before it ends.
        expect((yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 1], [2, 1]]),
          assignments: assign([[1, null], [2, 2]]),
          lease: long
        })).refused).toEqual([])
        expect((yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 2], [2, 1]]),
          assignments: assign([[1, 2], [2, 2]]),
          lease: long
        })).refused).toEqual([1])
        // Released by its owner at its epoch (it confirmed it stopped the shard): the move goes through.
        expect((yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 2], [2, 1]]),
          assignments: assign([[1, 2], [2, 2]]),
          released: [{ shardId: 1, epoch: 1 }],
          lease: long
        })).refused).toEqual([])
        expect(owners(yield* storage.getAssignments)).toEqual([[1, 2], [2, 2]])
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 1, epoch: 1 }], 60_000)).toEqual([])
        expect(
          yield* storage.renewShardLeases(address(2), "run-b", [{ shardId: 1, epoch: 2 }, { shardId: 2, epoch: 1 }], 60_000)
        ).toEqual([1, 2])

        // A lapsed lease is not revived: shard 3 granted with a lease that is over at once.
        expect((yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 2], [2, 1], [3, 1]]),
          assignments: assign([[1, 2], [2, 2], [3, 1]]),
          lease: { durationMillis: 0, marginMillis: 0 }
        })).refused).toEqual([])
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 3, epoch: 1 }], 60_000)).toEqual([])
        // Over (margin 0): another pod may have it, at the next epoch.
        expect((yield* storage.saveAll({
          pods: bothPods,
          epochs: epochsOf([[1, 2], [2, 1], [3, 2]]),
          assignments: assign([[1, 2], [2, 2], [3, 2]]),
          lease: { durationMillis: 60_000, marginMillis: 0 }
        })).refused).toEqual([])
        expect(owners(yield* storage.getAssignments)).toEqual([[1, 2], [2, 2], [3, 2]])
        expect(yield* storage.renewShardLeases(address(2), "run-b", [{ shardId: 3, epoch: 2 }], 60_000)).toEqual([3])

        // A restarted process (new incarnation) or a removed pod renews nothing.
        yield* storage.registerPod(pod(2), "run-b2")
        expect(yield* storage.renewShardLeases(address(2), "run-b", [{ shardId: 2, epoch: 1 }], 60_000)).toEqual([])
        yield* storage.registerPod(pod(1), "run-a")
        yield* storage.savePods(HashMap.fromIterable([[address(2), pod(2)]]))
        expect(yield* storage.renewShardLeases(address(1), "run-a", [{ shardId: 3, epoch: 1 }], 60_000)).toEqual([])
      }))

    it.scoped("one active manager: the lease is taken by compare-and-set, and a deposed manager's writes are rejected", () =>
      Effect.gen(function*() {
        const storage = yield* freshStorage(storageCase)
        expect(yield* storage.getManagerLease).toEqual(Option.none())
        // Two managers start at once: exactly one gets the lease.
        const [a, b] = yield* Effect.all(
          [storage.acquireManagerLease("manager-a", Option.none()), storage.acquireManagerLease("manager-b", Option.none())],
          { concurrency: 2 }
        )
        expect([a, b].filter(Option.isSome).length).toBe(1)
        const active = Option.isSome(a) ? "manager-a" : "manager-b"
        const standby = active === "manager-a" ? "manager-b" : "manager-a"
        expect(yield* storage.renewManagerLease(active, 1)).toBe(true)
        const seen = Option.getOrThrow(yield* storage.getManagerLease)
        expect(seen).toEqual({ holder: active, term: 1, renewals: 1 })
        // The active manager renewed since the standby looked: no take-over.
        expect(yield* storage.renewManagerLease(active, 1)).toBe(true)
        expect(yield* storage.acquireManagerLease(standby, Option.some(seen))).toEqual(Option.none())
        // It stopped renewing: the standby takes over with the next term.
        const now = Option.getOrThrow(yield* storage.getManagerLease)
        expect(yield* storage.acquireManagerLease(standby, Option.some(now))).toEqual(Option.some(2))
        expect(yield* storage.renewManagerLease(active, 1)).toBe(false)
        // The deposed manager's writes change nothing and say why.
        const deposed = storage.fencedBy(active, 1)
        const rejected = yield* Effect.flip(deposed.saveAssignments(assign([[1, 1]])))
        expect(rejected).toBeInstanceOf(Storage.StorageException)
        expect(rejected.fenced).toBe(true)
        const rejectedAll = yield* Effect.flip(
          deposed.saveAll({ pods: HashMap.empty(), epochs: epochsOf([[1, 9]]), assignments: assign([[1, 1]]) })
        )
        expect(rejectedAll.fenced).toBe(true)
        expect(owners(yield* storage.getAssignments)).toEqual([])
        expect(sortedEpochs(yield* storage.getEpochs)).toEqual([])
        // The new manager's fenced writes go through.
        yield* storage.fencedBy(standby, 2).saveAll({
          pods: HashMap.fromIterable([[address(2), pod(2)]]),
          epochs: epochsOf([[1, 1]]),
          assignments: assign([[1, 2]])
        })
        expect(owners(yield* storage.getAssignments)).toEqual([[1, 2]])
      }))
  })
}
