/**
 * Failover benchmark: `pnpm exec tsx --conditions=source bench/failover.ts`. Prints a markdown table.
 *
 * Real processes with the default lease (30 s, margin 5 s): the `effect-cluster manager` command on a
 * SQLite file, two pod processes (examples/cluster/pod.ts) and a client in this process. Once both pods
 * answer, pod-1 is killed with SIGKILL while the client keeps sending to a counter pod-1 held; the figure is
 * the time from the kill to the first successful reply from pod-2. The target is lease + 1 s.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Context, Effect, Either, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Counter, Increment } from "../examples/cluster/counter.js"
import { freePort, startProcess } from "../examples/cluster/processes.js"

const leaseMillis = 30_000
let requests = 0

const program = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "effect-cluster-failover-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const managerPort = yield* freePort
  const managerUri = `http://127.0.0.1:${managerPort}`
  yield* startProcess("manager", "packages/cluster/src/node/bin.ts", ["manager", "--port", String(managerPort)], {
    DATABASE_URL: join(dir, "cluster.db")
  }, /listening on/)
  const pods = yield* Effect.forEach(["pod-1", "pod-2"], (name) =>
    startProcess(name, "examples/cluster/pod.ts", [], { POD_NAME: name, PORT: "0", SHARD_MANAGER_URI: managerUri }, /joined/))
  const client = Context.get(
    yield* Layer.build(NodeCluster.layerPod({ sharding: { shardingPort: 0, shardManagerUri: managerUri } })),
    Sharding.Sharding
  )
  const send = (counter: string) =>
    client.messenger(Counter).send(counter)(new Increment({ requestId: `r-${requests++}` }))

  // A counter on pod-1, once the manager has given pod-2 its half.
  let victim: string | undefined
  for (let round = 0; victim === undefined; round++) {
    if (round > 600) return yield* Effect.dieMessage("pod-2 never got shards")
    const replies = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => `c-${i}`), (id) =>
      Effect.map(send(id), (reply) => ({ id, pod: reply.pod })))
    if (replies.some((r) => r.pod === "pod-2")) victim = replies.find((r) => r.pod === "pod-1")?.id
    if (victim === undefined) yield* Effect.sleep("100 millis")
  }
  const killedAt = performance.now()
  yield* pods[0]!.kill("SIGKILL")
  let failures = 0
  for (;;) {
    const result = yield* Effect.either(send(victim))
    if (Either.isRight(result) && result.right.pod === "pod-2") break
    failures++
  }
  const failoverMillis = performance.now() - killedAt
  return { failoverMillis, failures }
}).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const { failoverMillis, failures } = await Effect.runPromise(program)
console.log("| failover (kill -9 of a pod, default lease 30 s + margin 5 s) | ms | target ms | sends that failed meanwhile |")
console.log("|---|---:|---:|---:|")
console.log(`| kill -9 to the first reply from the new owner | ${failoverMillis.toFixed(0)} | ${leaseMillis + 1000} | ${failures} |`)
