/**
 * Workflow benchmark: `pnpm exec tsx --conditions=source bench/workflow.ts`. Prints a markdown table.
 *
 * A 3-activity workflow (each activity `Effect.succeed`, results journaled), started and awaited with
 * `engine.send`, on the in-memory journal, a SQLite file (WAL, in a temporary directory) and PostgreSQL
 * (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test), at concurrency 1 and 64. Each case runs
 * in its own child process, so the peak RSS of a row is that case's alone (it includes the Node process, tsx,
 * the loaded modules and the database client: the floor rows, which run no engine, show that base, ~190 MB).
 *
 * The floor: the same number of plain single-row INSERTs (one per activity of the concurrency-1 run)
 * through the same SqlClient with the client's default settings, sequential and with 10 connections
 * (PostgreSQL: the pool's default of 10; SQLite: the client holds one connection, so "10" is 10 fibers on it).
 *
 * Each workflow case runs for a fixed time (`BENCH_SECONDS`, default 4) after a warm-up (`BENCH_WARMUP`, 1);
 * its messages are built before the clock starts. Latency is the time of one `send` (start, three
 * activities, completion), measured at the caller.
 */
import {
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  DurableExecutionJournalSql,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, Redacted } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Bench, benchWorkflow } from "./threeSteps.js"

const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
/** Seconds of measurement per workflow case (after the warm-up). `BENCH_SECONDS` overrides. */
const seconds = Number(process.env.BENCH_SECONDS ?? 4)
const warmUpSeconds = Number(process.env.BENCH_WARMUP ?? 1)

type JournalName = "memory" | "sqlite" | "postgres"

type Case =
  | { readonly kind: "workflow"; readonly journal: JournalName; readonly concurrency: number }
  | { readonly kind: "floor"; readonly db: "sqlite" | "postgres"; readonly connections: number; readonly rows: number }

interface WorkflowResult {
  readonly workflows: number
  readonly seconds: number
  readonly p50: number
  readonly p99: number
  readonly peakRss: number
  readonly commits: number | undefined
}

interface FloorResult {
  readonly rows: number
  readonly seconds: number
  readonly peakRss: number
}

const peakRss = () => process.resourceUsage().maxRSS * 1024

const percentile = (sorted: Float64Array, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const uniquePrefix = () => `bench_${process.pid.toString(36)}_${Date.now().toString(36)}`

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(os.tmpdir(), "wf-bench-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const pgClient = PgClient.layer({ url: Redacted.make(databaseUrl) })

/** A SQLite client on a new file in a temporary directory (removed afterwards). */
const sqliteClient = Layer.unwrapScoped(
  Effect.map(tempDir, (dir) => Sqlite.layerClient({ filename: join(dir, "bench.db") }))
)

/** The journal (and its SqlClient, for clean-up) of a case; PostgreSQL tables are dropped afterwards. */
const journalLayer = (name: JournalName): Layer.Layer<DurableExecutionJournal.DurableExecutionJournal, unknown> => {
  if (name === "memory") return DurableExecutionJournalInMemory.layer
  const prefix = uniquePrefix()
  const journal = Layer.scoped(
    DurableExecutionJournal.DurableExecutionJournal,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          const t = yield* DurableExecutionJournalSql.tableNames(prefix)
          for (const table of [t.events, t.signals, t.executions, t.migrations]) {
            yield* sql`DROP TABLE IF EXISTS ${sql(table)}`
          }
        }).pipe(Effect.ignore)
      )
      return yield* DurableExecutionJournalSql.make({ prefix })
    })
  )
  return Layer.provide(journal, name === "sqlite" ? sqliteClient : pgClient)
}

const runWorkflowCase = (journal: JournalName, concurrency: number): Effect.Effect<WorkflowResult, unknown> =>
  Effect.gen(function*() {
    const engine = yield* WorkflowEngine.makeScoped(benchWorkflow)
    // Messages are built before the clock starts, as in bench/cluster.ts (constructing a validated Schema
    // class is the caller's work, not the engine's); each has its own id, so nothing is deduplicated.
    let counter = 0
    let messages: Array<Bench> = []
    let next = 0
    const build = (count: number) => {
      messages = Array.from({ length: count }, () => new Bench({ id: `wf-${counter}`, n: counter++ }))
      next = 0
    }
    const nextMessage = () => next < messages.length ? messages[next++]! : new Bench({ id: `wf-${counter}`, n: counter++ })
    // Workers send one workflow after another until the deadline; each send is one latency sample.
    const run = (until: number, latencies: Array<number> | undefined) =>
      Effect.forEach(
        Array.from({ length: concurrency }),
        () =>
          Effect.gen(function*() {
            let done = 0
            while (performance.now() < until) {
              const message = nextMessage()
              const t = performance.now()
              const result = yield* engine.send(message)
              if (result !== message.n + 6) return yield* Effect.dieMessage(`wrong result ${result}`)
              latencies?.push(performance.now() - t)
              done++
            }
            return done
          }),
        { concurrency: "unbounded" }
      )
    build(1000)
    const warmUpStart = performance.now()
    const warmedUp = (yield* run(warmUpStart + warmUpSeconds * 1000, undefined)).reduce((a, b) => a + b, 0)
    const rate = warmedUp / ((performance.now() - warmUpStart) / 1000)
    build(Math.ceil(rate * seconds * 1.5) + 1000)
    const latencies: Array<number> = []
    const start = performance.now()
    const counts = yield* run(start + seconds * 1000, latencies)
    const elapsed = (performance.now() - start) / 1000
    const sorted = Float64Array.from(latencies).sort()
    return {
      workflows: counts.reduce((a, b) => a + b, 0),
      seconds: elapsed,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      peakRss: peakRss(),
      commits: undefined
    }
  }).pipe(Effect.scoped, Effect.provide(journalLayer(journal)))

const runFloorCase = (
  db: "sqlite" | "postgres",
  connections: number,
  rows: number
): Effect.Effect<FloorResult, unknown> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `bench_floor_${process.pid}`
    yield* sql`DROP TABLE IF EXISTS ${sql(table)}`
    yield* sql`CREATE TABLE ${sql(table)} (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`
    yield* Effect.addFinalizer(() => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(table)}`))
    const body = JSON.stringify({ _tag: "Success", value: 1 })
    const insert = (i: number) => sql`INSERT INTO ${sql(table)} (id, body) VALUES (${i}, ${body})`
    // warm-up: open the connections
    yield* Effect.forEach(Array.from({ length: connections }, (_, i) => -1 - i), insert, { concurrency: connections })
    const start = performance.now()
    yield* Effect.forEach(Array.from({ length: rows }, (_, i) => i), insert, { concurrency: connections, discard: true })
    const elapsed = (performance.now() - start) / 1000
    return { rows, seconds: elapsed, peakRss: peakRss() }
  }).pipe(Effect.scoped, Effect.provide(db === "sqlite" ? sqliteClient : pgClient))

// ---------------------------------------------------------------------------------------------------------
// the parent: one child process per case
// ---------------------------------------------------------------------------------------------------------

const self = fileURLToPath(import.meta.url)

const runChild = <A>(benchCase: Case): Promise<A> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, self, "--case", JSON.stringify(benchCase)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk) => (out += chunk))
    child.on("error", reject)
    child.on("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("RESULT "))
      if (code !== 0 || line === undefined) {
        reject(new Error(`bench case ${JSON.stringify(benchCase)} failed (exit ${code}):\n${out}`))
      } else {
        resolve(JSON.parse(line.slice("RESULT ".length)))
      }
    })
  })

const postgresReachable = (): Promise<boolean> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`SELECT 1`
    }).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: 1, connectTimeout: "3 seconds" })),
      Effect.timeout("5 seconds"),
      Effect.match({ onFailure: () => false, onSuccess: () => true })
    )
  )

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const ms = (n: number) => `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`
const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`

/** The machine the benchmark runs on, one line. */
export const machine = () => {
  const cpus = os.cpus()
  return `${cpus[0]?.model.trim() ?? "unknown CPU"}, ${cpus.length} cores, ${
    Math.round(os.totalmem() / 1024 ** 3)
  } GB RAM, Node ${process.version} (${process.platform} ${process.arch})`
}

export const main = async (): Promise<string> => {
  const journals: Array<JournalName> = ["memory", "sqlite"]
  const pg = await postgresReachable()
  if (pg) journals.push("postgres")
  const lines: Array<string> = []
  lines.push(
    `3-activity workflow (\`engine.send\`, each activity \`Effect.succeed\`), ${seconds} s per case after ${warmUpSeconds} s warm-up; each case in its own process.`,
    "",
    "| journal | concurrency | workflows/s | activities/s | p50 latency | p99 latency | peak RSS |",
    "|---|---:|---:|---:|---:|---:|---:|"
  )
  const floors: Array<string> = []
  for (const journal of journals) {
    let activitiesAtC1 = 0
    for (const concurrency of [1, 64]) {
      const result = await runChild<WorkflowResult>({ kind: "workflow", journal, concurrency })
      const perSecond = result.workflows / result.seconds
      if (concurrency === 1) activitiesAtC1 = result.workflows * 3
      lines.push(
        `| ${journal} | ${concurrency} | ${fmt(perSecond)} | ${fmt(perSecond * 3)} | ${ms(result.p50)} | ${ms(result.p99)} | ${
          mb(result.peakRss)
        } |`
      )
      console.error(lines[lines.length - 1])
    }
    if (journal !== "memory") {
      for (const connections of [1, 10]) {
        const db = journal as "sqlite" | "postgres"
        const result = await runChild<FloorResult>({ kind: "floor", db, connections, rows: activitiesAtC1 })
        const label = db === "sqlite"
          ? (connections === 1 ? "sequential" : "10 concurrent (one connection)")
          : (connections === 1 ? "sequential" : "10 connections")
        floors.push(
          `| ${journal} | ${label} | ${fmt(result.rows)} | ${fmt(result.rows / result.seconds)} | ${mb(result.peakRss)} |`
        )
        console.error(floors[floors.length - 1])
      }
    }
  }
  lines.push(
    "",
    "Floor: plain single-row INSERTs (autocommit) through the same SqlClient, client defaults, as many rows as the concurrency-1 run had activities.",
    "",
    "| database | INSERTs | rows | rows/s | peak RSS |",
    "|---|---|---:|---:|---:|",
    ...floors
  )
  if (!pg) lines.push("", `PostgreSQL at ${databaseUrl} is unreachable: its rows are missing.`)
  return lines.join("\n")
}

const caseArg = process.argv.indexOf("--case")
if (caseArg >= 0) {
  const benchCase = JSON.parse(process.argv[caseArg + 1]!) as Case
  const effect: Effect.Effect<unknown, unknown> = benchCase.kind === "workflow"
    ? runWorkflowCase(benchCase.journal, benchCase.concurrency)
    : runFloorCase(benchCase.db, benchCase.connections, benchCase.rows)
  Effect.runPromise(effect).then(
    (result) => {
      process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
      process.exit(0)
    },
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
} else if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    (table) => {
      console.log(`${machine()}\n`)
      console.log(table)
    },
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
