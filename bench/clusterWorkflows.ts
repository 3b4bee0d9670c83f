/**
 * Workflows on the cluster against the in-process engine, on the same journal, in one run:
 * `pnpm exec tsx --conditions=source bench/clusterWorkflows.ts`. Prints a markdown table.
 *
 * For each journal (a SQLite file, then PostgreSQL at `DATABASE_URL`):
 * - in-process: one engine in this process runs the workflows;
 * - cluster: the `effect-cluster manager` command and 3 pod processes (bench/clusterWorkflowsPod.ts); this
 *   process is a client of the cluster (a `Sharding` that serves no shard) and starts every workflow
 *   through `ClusterWorkflowEngine`, which runs it on the pod that owns its shard.
 * Each runs `BENCH_WORKFLOWS` (default 2,000) 3-activity workflows, 64 at a time (`execute`: start and
 * await the result), after a warm-up of 128; the figure is workflows/s over the measured ones. The issue's
 * target: 3 pods on PostgreSQL >= 2x one in-process engine on PostgreSQL.
 *
 * `BENCH_JOURNALS` (default `sqlite,postgres`) picks the journals, `BENCH_MODES` (default
 * `in-process,cluster`) the engines (a figure not measured shows as 0); `BENCH_POD_NODE_ARGS` (space-separated) are
 * given to node in the pod processes (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them).
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import { ClusterWorkflowEngine, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Effect, Layer, Redacted } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { freePort, startProcess } from "../examples/cluster/processes.js"
import { BenchPayment, benchWorkflow, journalLayer, type JournalSpec } from "./clusterWorkflowsShared.js"

const total = Number(process.env.BENCH_WORKFLOWS ?? 2000)
const concurrency = 64
const warmup = 128
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const journals = (process.env.BENCH_JOURNALS ?? "sqlite,postgres").split(",")
const podNodeArgs = (process.env.BENCH_POD_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== "")
const modes = (process.env.BENCH_MODES ?? "in-process,cluster").split(",")
let ids = 0

/** Runs `count` workflows, `concurrency` at a time, through `engine`; returns the seconds it took. */
const runWorkflows = (engine: WorkflowEngine.WorkflowEngine<BenchPayment>, count: number) =>
  Effect.gen(function*() {
    const run = `${Date.now().toString(36)}-${ids++}`
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => engine.execute(new BenchPayment({ orderId: `${run}-${i}`, amount: i })),
      { concurrency, discard: true }
    )
    return (performance.now() - started) / 1000
  })

/**
 * The machine's CPU time so far (every process: this one, the pods, the manager, PostgreSQL), in ms: the
 * first line of /proc/stat is user, nice, system, idle, iowait, irq, softirq, steal (in 1/100 s).
 */
const machineCpu = () => {
  const ticks = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const all = ticks.reduce((sum, n) => sum + n, 0) * 10
  const idle = ((ticks[3] ?? 0) + (ticks[4] ?? 0)) * 10
  return { busy: all - idle, all }
}

interface Measured {
  readonly perSecond: number
  /** CPU ms of the whole machine per workflow over the measured run. */
  readonly cpuPerWorkflow: number
  /** The share of the machine's cores busy during the measured run. */
  readonly busy: number
}

/**
 * Warm-up, then the measured run: workflows/s, and the machine's CPU per workflow. When the machine is
 * busy all the time in both runs, the ratio of the two CPU figures bounds the ratio of the two rates.
 */
const measure = (engine: WorkflowEngine.WorkflowEngine<BenchPayment>) =>
  Effect.gen(function*() {
    yield* runWorkflows(engine, warmup)
    const before = machineCpu()
    const seconds = yield* runWorkflows(engine, total)
    const after = machineCpu()
    return {
      perSecond: total / seconds,
      cpuPerWorkflow: (after.busy - before.busy) / total,
      busy: (after.busy - before.busy) / (after.all - before.all)
    } satisfies Measured
  })

const inProcess = (spec: JournalSpec) =>
  Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(journalLayer(spec))
    const engine = yield* Effect.provide(WorkflowEngine.makeScoped(benchWorkflow), context)
    return yield* measure(engine)
  }))

const onCluster = (spec: JournalSpec, managerDatabase: string) =>
  Effect.scoped(Effect.gen(function*() {
    const managerPort = yield* freePort
    const managerUri = `http://127.0.0.1:${managerPort}`
    const prefix = `${spec.prefix}_mgr`
    yield* startProcess(
      "manager",
      "packages/cluster/src/node/bin.ts",
      ["manager", "--port", String(managerPort), "--number-of-shards", "30", "--table-prefix", prefix],
      { DATABASE_URL: managerDatabase, REBALANCE_RATE: "1", REBALANCE_INTERVAL: "1000" },
      /listening on/
    )
    // The journal's tables are created here, before any pod starts (several processes on one SQLite file).
    const client = yield* Layer.build(
      journalLayer(spec).pipe(Layer.provideMerge(NodeCluster.layerPod({
        sharding: { shardingPort: 0, shardManagerUri: managerUri, numberOfShards: 30 },
        transport: { host: "127.0.0.1" }
      })))
    )
    const engine = yield* Effect.provide(ClusterWorkflowEngine.make(benchWorkflow, { prefix: spec.prefix }), client)
    yield* Effect.forEach(["pod-1", "pod-2", "pod-3"], (name) =>
      startProcess(name, "bench/clusterWorkflowsPod.ts", [], {
        BENCH_JOURNAL: JSON.stringify(spec),
        SHARD_MANAGER_URI: managerUri
      }, /^ready$/, podNodeArgs), { concurrency: "unbounded" })
    // every shard owned by one of the pods (the client's routing table, refreshed)
    const sharding = Context.get(client, Sharding.Sharding)
    for (let round = 0;; round++) {
      if (round > 600) return yield* Effect.dieMessage("the shards were not spread over the pods in 60 s")
      yield* sharding.refreshAssignments
      const pods = yield* sharding.getPods
      if ([...pods].length >= 4) break
      yield* Effect.sleep("100 millis")
    }
    return yield* measure(engine)
  }))

const program = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "effect-cluster-bench-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const tag = Date.now().toString(36)
  // the PostgreSQL tables of this run (the journals' and the manager's) are dropped at the end
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tables = yield* sql<{ tablename: string }>`SELECT tablename FROM pg_tables WHERE tablename LIKE ${`bench_${tag}_%`}`
      for (const { tablename } of tables) yield* sql`DROP TABLE IF EXISTS ${sql(tablename)} CASCADE`
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: 1 })), Effect.ignore)
  )
  const rows: Array<string> = []
  const sqlite = (name: string): JournalSpec => ({ dialect: "sqlite", location: join(dir, `${name}.db`), prefix: "wf" })
  const postgres = (name: string): JournalSpec => ({ dialect: "postgres", location: databaseUrl, prefix: `bench_${tag}_${name}` })
  const none: Measured = { perSecond: 0, cpuPerWorkflow: 0, busy: 0 }
  const row = (name: string, alone: Measured, cluster: Measured) =>
    `| ${name} | ${alone.perSecond.toFixed(0)} | ${cluster.perSecond.toFixed(0)} | ${(cluster.perSecond / alone.perSecond).toFixed(2)}x | ${
      alone.cpuPerWorkflow.toFixed(2)
    } / ${cluster.cpuPerWorkflow.toFixed(2)} | ${(alone.busy * 100).toFixed(0)}% / ${(cluster.busy * 100).toFixed(0)}% |`
  if (journals.includes("sqlite")) {
    const alone = modes.includes("in-process") ? yield* inProcess(sqlite("alone")) : none
    const cluster = modes.includes("cluster") ? yield* onCluster(sqlite("cluster"), join(dir, "manager.db")) : none
    rows.push(row("SQLite file", alone, cluster))
  }
  if (journals.includes("postgres")) {
    const alone = modes.includes("in-process") ? yield* inProcess(postgres("alone")) : none
    const cluster = modes.includes("cluster") ? yield* onCluster(postgres("cluster"), databaseUrl) : none
    rows.push(row("PostgreSQL", alone, cluster))
  }
  return rows
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(NodeContext.layer))).then((rows) => {
  console.log(`\n${total} workflows of 3 activities, ${concurrency} at a time (execute: start and await), after ${warmup} to warm up\n`)
  console.log(`machine: ${cpus().length} cores; CPU is the whole machine's (every process), in ms per workflow\n`)
  console.log(
    "| journal | in-process engine, wf/s | cluster, 3 pod processes, wf/s | cluster / in-process | CPU ms/wf, in-process / cluster | machine busy, in-process / cluster |"
  )
  console.log("|---|---:|---:|---:|---:|---:|")
  for (const row of rows) console.log(row)
}, (error) => {
  console.error(error)
  process.exit(1)
})
