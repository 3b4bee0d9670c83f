/**
 * Failover benchmark: `pnpm exec tsx --conditions=source bench/failover.ts`. Prints a markdown table.
 *
 * Real processes in the documented deployment with its defaults (lease 30 s renewed every 10 s, manager
 * margin 500 ms): the `effect-cluster manager` command on a SQLite file, two pod processes
 * (examples/cluster/pod.ts) that renew their leases in that database, and a client in this process. Once
 * both pods answer, the benchmark watches the database lease of a counter pod-1 holds and kills pod-1 with
 * SIGKILL right after pod-1 renewed it (the worst case: a whole lease left to wait out), while the client
 * keeps sending to that counter. The figure is the time from the kill to the first successful reply from
 * pod-2; the target is lease + 1 s. Also printed: how much of the lease was left at the kill, and
 * how long after the lease's end (database clock = this machine's clock) the first reply came.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
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
  const database = join(dir, "cluster.db")
  const managerPort = yield* freePort
  const managerUri = `http://127.0.0.1:${managerPort}`
  yield* startProcess("manager", "packages/cluster/src/node/bin.ts", ["manager", "--port", String(managerPort)], {
    DATABASE_URL: database
  }, /listening on/)
  const pods = yield* Effect.forEach(["pod-1", "pod-2"], (name) =>
    startProcess(name, "examples/cluster/pod.ts", [], {
      POD_NAME: name,
      PORT: "0",
      SHARD_MANAGER_URI: managerUri,
      DATABASE_URL: database
    }, /joined/))
  const client = Context.get(
    yield* Layer.build(NodeCluster.layerPod({ sharding: { shardingPort: 0, shardManagerUri: managerUri } })),
    Sharding.Sharding
  )
  const sql = Context.get(yield* Layer.build(StorageSql.layerClient(database)), SqlClient.SqlClient)
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
  // pod-1's next renewal of the counter's shard in the database: its lease end moves.
  const shard = client.getShardId(victim).value
  const leaseEnd = Effect.map(
    sql<{ lease_end: unknown }>`SELECT lease_expires_at AS lease_end FROM effect_cluster_shards WHERE shard_id = ${shard}`,
    (rows) => Number(rows[0]?.lease_end ?? 0)
  )
  const before = yield* leaseEnd
  let renewedUntil = before
  for (let polls = 0; renewedUntil === before; polls++) {
    if (polls > 3000) return yield* Effect.dieMessage("pod-1 never renewed its lease in the database")
    yield* Effect.sleep("5 millis")
    renewedUntil = yield* leaseEnd
  }
  const killedAt = performance.now()
  const killedAtWall = Date.now()
  yield* pods[0]!.kill("SIGKILL")
  let failures = 0
  for (;;) {
    const result = yield* Effect.either(send(victim))
    if (Either.isRight(result) && result.right.pod === "pod-2") break
    failures++
  }
  const failoverMillis = performance.now() - killedAt
  yield* Effect.log(
    `pod-1 renewed until ${new Date(renewedUntil).toISOString()}, killed at ${new Date(killedAtWall).toISOString()}, ` +
      `first reply from pod-2 at ${new Date(killedAtWall + failoverMillis).toISOString()}`
  )
  return {
    failoverMillis,
    failures,
    leftAtKill: renewedUntil - killedAtWall,
    afterLeaseEnd: killedAtWall + failoverMillis - renewedUntil
  }
}).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const { afterLeaseEnd, failoverMillis, failures, leftAtKill } = await Effect.runPromise(program)
console.log(
  "| failover (kill -9 of a pod right after its lease renewal; lease 30 s, margin 500 ms, leases in the database) " +
    "| ms | lease left at the kill, ms | first reply after the lease end, ms | target ms | sends that failed meanwhile |"
)
console.log("|---|---:|---:|---:|---:|---:|")
console.log(
  `| kill -9 to the first reply from the new owner | ${failoverMillis.toFixed(0)} | ${leftAtKill.toFixed(0)} | ${
    afterLeaseEnd.toFixed(0)
  } | ${leaseMillis + 1000} | ${failures} |`
)
