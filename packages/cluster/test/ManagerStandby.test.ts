/**
 * Standby managers over the network, in one process on real loopback sockets (live clock): two managers
 * (`NodeCluster.layerManagerStandby`) on one SQLite file or PostgreSQL, each on its own port, and a pod
 * given both URIs. The multi-process version (real processes, SIGKILL) is in MultiProcess.test.ts.
 */
import { ManagerLease, Sharding, ShardingConfig, Storage } from "@effect-cluster/cluster"
import { NodeCluster, ShardManagerClientRpc, Transport } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Fiber, HashSet, Layer, Option, Scope } from "effect"
import { Counter, counterBehaviour, freshId, Increment } from "./utils/counter.js"
import { closedPort, eventuallyLive, rawWebSocket, startPod } from "./utils/network.js"
import { storageCases } from "./utils/storages.js"

const numberOfShards = 6
const manager = { numberOfShards, leaseDuration: Duration.millis(1500), leaseMargin: Duration.millis(500) }
const sharding = {
  numberOfShards,
  leaseDuration: Duration.millis(1500),
  leaseRenewalInterval: Duration.millis(300),
  leaseMargin: Duration.millis(500),
  entityTerminationTimeout: Duration.millis(200),
  sendRetryInterval: Duration.millis(50),
  sendRetryTimeout: Duration.seconds(10)
}

const healthOf = (port: number) =>
  Effect.promise(() =>
    fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(3_000) }).then((r) => r.status, () => 0)
  )

/** `getShardAssignments` through a client given `uris`: whether it got an answer, or its error's tag. */
const askFor = (uris: string) =>
  ShardManagerClientRpc.make.pipe(
    Effect.flatMap((client) => client.getShardAssignments),
    Effect.as("answered"),
    Effect.catchAll((error) => Effect.succeed(error._tag)),
    Effect.provideService(ShardingConfig.ShardingConfig, { ...ShardingConfig.defaultValues, shardManagerUri: uris }),
    Effect.provideService(Transport.TransportConfig, { ...Transport.defaultValues, callTimeout: Duration.seconds(2) }),
    Effect.scoped
  )

describe("ShardManagerClientRpc.managerAddressesOf", () => {
  it("reads one manager URI, or several separated by commas (spaces and empty entries ignored)", () => {
    expect(ShardManagerClientRpc.managerAddressesOf("http://m1:8080/api/rest")).toEqual([{ host: "m1", port: 8080 }])
    expect(ShardManagerClientRpc.managerAddressesOf(" http://m1:8080, https://m2 ,,http://[::1]:9000")).toEqual([
      { host: "m1", port: 8080 },
      { host: "m2", port: 443 },
      { host: "::1", port: 9000 }
    ])
  })
})

for (const storageCase of storageCases) {
  if (storageCase.name === "memory") continue
  describe.skipIf(storageCase.skip !== undefined)(`Standby managers [${storageCase.name}]`, () => {
    it.live("a standby answers ManagerNotActive until the active one stops; then it takes over and the pod keeps its shards through it", () =>
      Effect.gen(function*() {
        const database = yield* storageCase.database
        const [storageA, storageB] = [yield* database.open, yield* database.open]
        const portA = yield* closedPort
        const start = (holder: string, port: number, storage: typeof storageA) =>
          Layer.build(
            NodeCluster.layerManagerStandby({ holder, manager: { ...manager, apiPort: port } }).pipe(
              Layer.provide(Layer.succeed(Storage.Storage, storage))
            )
          )
        const scopeA = yield* Scope.make()
        yield* Scope.extend(start("manager-a", portA, storageA), scopeA)
        // B binds its port at once but is built (active) only once it holds the lease. (A port found free may be
        // taken by another process's socket before B binds it, in a full run: B's build then fails at once, and
        // B starts again on another port.)
        let portB = yield* closedPort
        let b = yield* Effect.fork(start("manager-b", portB, storageB))
        for (let tries = 1; ; tries++) {
          yield* eventuallyLive(
            Effect.zipWith(healthOf(portB), b.poll, (status, ended) => status === 503 || Option.isSome(ended))
          )
          const ended = yield* b.poll
          if (Option.isNone(ended)) break
          if (tries === 3) return yield* Effect.dieMessage(`manager B did not start: ${String(ended.value)}`)
          portB = yield* closedPort
          b = yield* Effect.fork(start("manager-b", portB, storageB))
        }
        expect(yield* healthOf(portA)).toBe(200)
        const uris = `http://127.0.0.1:${portB},http://127.0.0.1:${portA}`
        // The standby's own answer to a call: the typed ManagerNotActive.
        const raw = yield* rawWebSocket(portB)
        yield* raw.send(JSON.stringify({ _tag: "Request", id: "1", tag: "GetShardAssignments", payload: {}, headers: [] }) + "\n")
        expect(yield* raw.next).toContain("@effect-cluster/cluster/node/ManagerNotActive")
        // Alone, the standby refuses; with the list, the client finds the active manager.
        expect(yield* askFor(`http://127.0.0.1:${portB}`)).toBe("ShardManagerUnavailableException")
        expect(yield* askFor(uris)).toBe("answered")

        const pod = yield* startPod({
          managerUri: uris,
          sharding,
          setup: Sharding.registerEntity(Counter)(counterBehaviour())
        })
        const holdsAll = Effect.map(pod.sharding.getAssignedShardIds, (shards) => HashSet.size(shards) === numberOfShards)
        yield* eventuallyLive(holdsAll)
        const increment = pod.sharding.messenger(Counter).send("e")(new Increment({ messageId: freshId(), by: 1 }))
        expect(yield* increment).toBe(1)

        // A stops (its process ends): B takes over after the lease, resumes the stored assignment.
        yield* Scope.close(scopeA, Exit.void)
        const active = yield* Fiber.join(b).pipe(Effect.timeout("20 seconds"))
        expect(Context.get(active, ManagerLease.Tenure).term).toBe(2)
        expect(yield* healthOf(portB)).toBe(200)
        // The pod renews through B and serves its shards (a send's retries cover the gap before B was active).
        yield* eventuallyLive(holdsAll, 20_000)
        expect(yield* increment.pipe(Effect.timeout("15 seconds"))).toBeGreaterThanOrEqual(1)
        const assignments = yield* storageB.getAssignments
        expect(Array.from(assignments).filter(([, owner]) => Option.isSome(owner)).length).toBe(numberOfShards)

        // Deposed (another process took the lease while B was cut off): B stops answering at its next renewal.
        const current = yield* storageA.getManagerLease
        expect(yield* storageA.acquireManagerLease("manager-c", current)).toEqual(Option.some(3))
        yield* eventuallyLive(Effect.map(healthOf(portB), (status) => status === 503), 5_000)
        expect(yield* askFor(uris)).toBe("ShardManagerUnavailableException")
      }).pipe(Effect.scoped), { timeout: 60_000 })
  })
}
