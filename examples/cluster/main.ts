/**
 * A cluster of processes on this machine, with one command (`pnpm example:cluster`):
 *
 * - a shard manager: the package's `effect-cluster manager` command, on a SQLite file in a new temporary
 *   directory (or on PostgreSQL when `DATABASE_URL` is set, under a table prefix of its own);
 * - three pod processes (examples/cluster/pod.ts) running a counter entity, each renewing its shards'
 *   leases in the manager's database (the documented deployment: pods keep serving while the manager is
 *   down, and a crashed pod's shards move lease + 500 ms after its last renewal);
 * - a client (this process) that increments a few counters and prints which pod answered.
 *
 * Every process is started in this program's scope: on exit, an error or Ctrl-C, the pods get SIGTERM
 * (they hand their shards back and leave), then the manager, then the temporary files are removed.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqlClient from "@effect/sql/SqlClient"
import { Console, Context, Effect, ExecutionStrategy, Layer, Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Counter, Increment } from "./counter.js"
import { freePort, startProcess } from "./processes.js"

/** One reply of the client. */
export interface Row {
  readonly counter: string
  readonly round: number
  readonly count: number
  readonly pod: string
}

/**
 * What a run leaves to check: the client's replies, how many pods recorded their process (incarnation) in
 * the database to renew their leases there, and the processes and directory it cleaned up.
 */
export interface Run {
  readonly rows: ReadonlyArray<Row>
  readonly podsWithDatabaseLeases: number
  readonly pids: ReadonlyArray<number>
  readonly dir: string
}

/** The whole example. */
export const main: Effect.Effect<Run, unknown, CommandExecutor.CommandExecutor> = Effect.gen(function*() {
  const databaseUrl = process.env.DATABASE_URL
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "effect-cluster-example-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const managerPort = yield* freePort
  const managerUri = `http://127.0.0.1:${managerPort}`
  // The manager and the pods share the database and the table prefix: the pods renew their leases there.
  // A fresh prefix per run: on PostgreSQL, a manager on earlier state would wait a lease before assigning.
  const common = {
    NUMBER_OF_SHARDS: "60",
    DATABASE_URL: databaseUrl ?? join(dir, "cluster.db"),
    CLUSTER_TABLE_PREFIX: `example_${Date.now().toString(36)}`
  }
  const manager = yield* startProcess(
    "manager",
    "packages/cluster/src/node/bin.ts",
    ["manager", "--port", String(managerPort)],
    common,
    /listening on/
  )
  // A scope of their own, forked after the manager started: closed before the manager's, the pods leave
  // while it can still take their shards back, all three at once.
  const pods = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.parallel)
  const podProcesses = yield* Effect.forEach(
    ["pod-1", "pod-2", "pod-3"],
    (name) =>
      startProcess(name, "examples/cluster/pod.ts", [], {
        ...common,
        POD_NAME: name,
        PORT: "0",
        SHARD_MANAGER_URI: managerUri
      }, /joined/).pipe(Scope.extend(pods)),
    { concurrency: "unbounded" }
  )

  // The client: a pod that only sends (it does not register, so it holds no shard).
  const client = Context.get(
    yield* Layer.build(NodeCluster.layerPod({ sharding: { shardingPort: 0, shardManagerUri: managerUri, numberOfShards: 60 } })),
    Sharding.Sharding
  )
  // Round after round, until one round was answered by all three pods: the first pod to join gets every
  // shard, and the manager's balancing rounds then move shards to the others, each move restarting the
  // counters of its shard on the new owner (their state is in memory only).
  const counters = ["apples", "pears", "plums", "figs", "limes", "kiwis", "dates", "lemons"]
  const rows: Array<Row> = []
  for (let round = 1; round <= 60; round++) {
    const replies = yield* Effect.forEach(counters, (counter) =>
      Effect.map(
        client.messenger(Counter).send(counter)(new Increment({ requestId: `${counter}-${round}` })),
        (reply): Row => ({ counter, round, ...reply })
      ))
    rows.push(...replies)
    yield* Console.log(`round ${round}: ${replies.map((row) => `${row.counter}=${row.count}@${row.pod}`).join(" ")}`)
    if (new Set(replies.map((row) => row.pod)).size === 3) break
    yield* Effect.sleep("500 millis")
  }
  // Pods that renew in the database recorded their incarnation in the pods table (the manager alone
  // writes an empty one).
  const podsWithDatabaseLeases = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: unknown }>`SELECT COUNT(*) AS n FROM ${sql(`${common.CLUSTER_TABLE_PREFIX}_pods`)} WHERE incarnation <> ''`
  ).pipe(
    Effect.map((rows) => Number(rows[0]?.n ?? 0)),
    Effect.provide(StorageSql.layerClient(common.DATABASE_URL))
  )
  return { rows, dir, podsWithDatabaseLeases, pids: [manager.pid, ...podProcesses.map((pod) => pod.pid)] }
}).pipe(Effect.scoped)

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main.pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
}
