/**
 * One active manager among standbys, on every storage (memory, a SQLite file, PostgreSQL), live clock.
 */
import { ManagerLease, PodAddress, ShardId, Storage } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, HashMap, Option, Scope } from "effect"
import { eventuallyLive } from "./utils/network.js"
import { storageCases } from "./utils/storages.js"

const options = (holder: string) => ({ holder, leaseDuration: Duration.millis(900), leaseMargin: Duration.millis(300) })
const assignment = (port: number) => HashMap.make([ShardId.make(1), Option.some(PodAddress.make("host", port))] as const)

for (const storageCase of storageCases) {
  if (storageCase.skip !== undefined) continue
  describe(`ManagerLease [${storageCase.name}]`, () => {
    it.live("a standby takes over only once the active manager stopped renewing, and fences its writes", () =>
      Effect.gen(function*() {
        const database = yield* storageCase.database
        const [storageA, storageB] = [yield* database.open, yield* database.open]
        const scopeA = yield* Scope.make()
        const a = yield* Effect.provideService(ManagerLease.acquire(storageA, options("manager-a")), Scope.Scope, scopeA)
        expect(a.term).toBe(1)
        expect(yield* a.active).toBe(true)
        yield* a.storage.saveAssignments(assignment(1))
        const standby = yield* Effect.fork(ManagerLease.acquire(storageB, options("manager-b")))
        // Three lease periods while A renews: B stays a standby.
        yield* Effect.sleep("2700 millis")
        expect(Option.isNone(yield* Fiber.poll(standby))).toBe(true)
        yield* Scope.close(scopeA, Exit.void) // A's process stops
        const b = yield* Fiber.join(standby).pipe(Effect.timeout("10 seconds"))
        expect(b.term).toBe(2)
        // A's writes are rejected, B's go through.
        const rejected = yield* Effect.flip(a.storage.saveAssignments(assignment(9)))
        expect(rejected.fenced).toBe(true)
        expect(yield* a.active).toBe(false)
        // Nothing of the deposed manager's write landed.
        const kept = yield* storageB.getAssignments
        expect(Option.map(Option.flatten(HashMap.get(kept, ShardId.make(1))), (address) => address.port)).toEqual(
          Option.some(1)
        )
        yield* b.storage.saveAssignments(assignment(2))
        const stored = yield* storageB.getAssignments
        expect(Option.map(Option.flatten(HashMap.get(stored, ShardId.make(1))), (address) => address.port)).toEqual(
          Option.some(2)
        )
      }).pipe(Effect.scoped))

    it.live("an active manager whose lease was taken over (it was paused) learns it at its next renewal", () =>
      Effect.gen(function*() {
        const database = yield* storageCase.database
        const storage = yield* database.open
        const a = yield* ManagerLease.acquire(storage, options("manager-a"))
        // A standby that concluded A was dead while A was frozen takes the lease.
        const current = yield* storage.getManagerLease
        expect(yield* storage.acquireManagerLease("manager-b", current)).toEqual(Option.some(2))
        yield* a.lost.pipe(Effect.timeout("5 seconds"))
        expect(yield* a.active).toBe(false)
        const rejected = yield* Effect.flip(a.storage.saveAll({
          pods: HashMap.empty(),
          epochs: HashMap.make([ShardId.make(1), 1] as const),
          assignments: HashMap.empty()
        }))
        expect(rejected).toBeInstanceOf(Storage.StorageException)
        expect(rejected.fenced).toBe(true)
      }).pipe(Effect.scoped))
  })
}

describe("ManagerLease renewals", () => {
  it.live("a renewal that dies (a storage defect) counts as a failed one: the next renews, the manager stays active", () =>
    Effect.gen(function*() {
      const memory = storageCases.find((storageCase) => storageCase.name === "memory")!
      const storage = yield* (yield* memory.database).open
      let calls = 0
      const dying: Storage.LeasedStorage = {
        ...storage,
        renewManagerLease: (holder, term) =>
          Effect.suspend(() =>
            ++calls === 1 ? Effect.dieMessage("a bug in the storage (test)") : storage.renewManagerLease(holder, term)
          )
      }
      const a = yield* ManagerLease.acquire(dying, options("manager-a"))
      // Past the lease of the acquisition (900 ms): only renewals after the defect keep it active.
      yield* eventuallyLive(Effect.sync(() => calls >= 5))
      expect(yield* a.active).toBe(true)
    }).pipe(Effect.scoped))
})
