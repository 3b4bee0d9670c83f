/**
 * `pnpm bench:peers`: this project and its peers, the same workload on one machine, side by side.
 *
 * The root script first installs bench/peers (its own package.json and lockfile, outside the workspace;
 * a no-op once installed), then this file runs every case in a fresh child process with fresh state (a new PostgreSQL database via CREATE DATABASE,
 * dropped afterwards; a new SQLite file; a new Restate server with its storage in a temporary directory),
 * round after round (3 rounds; each figure is the median, with min-max), and prints a markdown table that
 * it also writes to bench/peers/results.md.
 *
 * Options: --quick (1 round of 1 s cases, at most 500 sleepers: a smoke test), --runs N, --seconds S (measured
 * window per case), --warmup S, --sleepers N, --sleeper-runs N, --sleeper-seconds S (longest estimated
 * start phase: slower systems get fewer sleepers), --no-sleepers, --only id,id (see systems.ts),
 * --workloads instant,io,floor (only these workloads), --concurrency 1,64 (only these concurrencies; floors:
 * connections), --out FILE, --verbose (children's stderr). One case at concurrency 1 on PostgreSQL with its
 * floor: `--only project-pg,floor-pg --workloads instant,floor --concurrency 1 --no-sleepers`.
 * Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server and the
 * database that CREATE DATABASE is run from.
 */
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { CaseResult, CaseSpec, LoopResult } from "./common.js"
import { type Environment, environment, render, type RunRecord } from "./report.js"
import {
  type Admin,
  backendPids,
  cleanupAll,
  connectAdmin,
  cpuByPid,
  cpuDelta,
  freshDatabase,
  isClosing,
  settledCommits,
  pgbench,
  pgbenchInit,
  pgbenchVersion,
  processCpuMicros,
  processPeakRss,
  type RestateServer,
  startRestate,
  tempDir,
  trackProcess
} from "./resources.js"
import { type CaseDef, caseKey, cases, floors, systems } from "./systems.js"

const here = dirname(fileURLToPath(import.meta.url))
const benchDir = dirname(here)

interface Options {
  readonly quick: boolean
  readonly runs: number
  readonly measureMs: number
  readonly warmupMs: number
  readonly sleepers: number
  readonly sleeperRuns: number
  readonly sleeperSeconds: number
  readonly withSleepers: boolean
  readonly only: ReadonlyArray<string> | undefined
  readonly workloads: ReadonlyArray<string> | undefined
  readonly concurrency: ReadonlyArray<number> | undefined
  readonly out: string
  readonly verbose: boolean
}

const parseOptions = (argv: ReadonlyArray<string>): Options => {
  const value = (name: string) => {
    const i = argv.indexOf(name)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const number = (name: string, fallback: number) => {
    const raw = value(name)
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} needs a positive number, got ${raw}`)
    return n
  }
  const quick = argv.includes("--quick")
  const runs = number("--runs", quick ? 1 : 3)
  return {
    quick,
    runs,
    measureMs: number("--seconds", quick ? 1 : 3) * 1000,
    warmupMs: number("--warmup", quick ? 0.3 : 1) * 1000,
    sleepers: number("--sleepers", quick ? 500 : 10_000),
    sleeperRuns: number("--sleeper-runs", 1),
    sleeperSeconds: number("--sleeper-seconds", quick ? 5 : 10),
    withSleepers: !argv.includes("--no-sleepers"),
    only: value("--only")?.split(","),
    workloads: value("--workloads")?.split(","),
    concurrency: value("--concurrency")?.split(",").map(Number),
    out: value("--out") ?? join(here, "results.md"),
    verbose: argv.includes("--verbose")
  }
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** Workflows per second of a system's instant c=64 runs so far: sizes its sleepers case. */
const rate64 = (records: Map<string, Array<RunRecord>>, systemId: string): number | undefined => {
  const runs = records.get(`${systemId}|instant|64`)?.flatMap((r) => r.result?.kind === "loop" ? [r.result] : [])
  return runs === undefined || runs.length === 0 ? undefined : median(runs.map((r) => r.workflows / r.seconds))
}

/** The child's command line: this project's script with its source condition, the peers' without. */
const childArgs = (def: CaseDef): Array<string> => {
  const script = def.system.script!
  const execArgv = process.execArgv.filter((a) => !a.startsWith("--conditions"))
  return [...execArgv, ...(script.project ? ["--conditions=source"] : []), join(benchDir, script.path), ...script.args]
}

interface Observed {
  serverCpuMicros?: number
  serverPeakRss?: number
}

/**
 * What the parent reads at the child's MARKs: the CPU time of the database's backends, or of the Restate
 * server, and the server's peak memory at the end.
 */
const observer = (admin: Admin | undefined, database: string | undefined, restate: RestateServer | undefined) => {
  let backendsAtStart = new Map<number, number>()
  let serverAtStart = 0
  const observed: Observed = {}
  const onMark = async (name: string) => {
    if (admin !== undefined && database !== undefined) {
      const cpu = cpuByPid(await backendPids(admin, database))
      if (name === "start") backendsAtStart = cpu
      else observed.serverCpuMicros = cpuDelta(backendsAtStart, cpu)
    }
    if (restate !== undefined) {
      const cpu = processCpuMicros(restate.pid) ?? NaN
      if (name === "start") serverAtStart = cpu
      else {
        observed.serverCpuMicros = cpu - serverAtStart
        observed.serverPeakRss = processPeakRss(restate.pid) ?? NaN
      }
    }
  }
  return { onMark, observed }
}

/** Runs one child process to its RESULT line, answering its MARKs. */
const runChild = (def: CaseDef, spec: CaseSpec, onMark: (name: string) => Promise<void>, options: Options) =>
  new Promise<CaseResult>((resolve, reject) => {
    const child = spawn(process.execPath, childArgs(def), {
      cwd: benchDir,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, BENCH_CASE: JSON.stringify(spec) }
    })
    const stop = trackProcess(child)
    let stderr = ""
    let result: CaseResult | undefined
    const limitMs = spec.warmupMs + spec.measureMs + spec.startBudgetMs + spec.sleepers * 30 + 180_000
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${Math.round(limitMs / 1000)} s)`
      void stop()
    }, limitMs)
    child.stderr!.on("data", (chunk: Buffer) => {
      if (options.verbose) process.stderr.write(chunk)
      stderr = (stderr + chunk.toString()).slice(-4000)
    })
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("MARK ")) {
        onMark(line.slice(5)).then(() => child.stdin!.write("GO\n"), (error) => {
          stderr += `\n(parent: ${String(error)})`
          void stop()
        })
      } else if (line.startsWith("RESULT ")) {
        result = JSON.parse(line.slice(7)) as CaseResult
      } else if (options.verbose) {
        console.error(line)
      }
    })
    child.once("error", reject)
    child.once("exit", (code) => {
      clearTimeout(timer)
      if (code === 0 && result !== undefined) resolve(result)
      else reject(new Error(`exit ${code}: ${stderr.trim().split("\n").slice(-15).join("\n")}`))
    })
  })

/** pgbench as a floor case: its own process, its own fresh database. */
const runPgbench = async (admin: Admin, def: CaseDef, options: Options): Promise<RunRecord> => {
  const db = await freshDatabase(admin, def.system.id)
  try {
    await pgbenchInit(db.url)
    const initCommits = await settledCommits(admin, db.name)
    const result = await pgbench(db.url, def.concurrency, Math.max(1, Math.round(options.measureMs / 1000)))
    const loop: LoopResult = {
      kind: "loop",
      workflows: result.transactions,
      total: result.transactions,
      seconds: result.transactions / result.tps,
      p50: result.p50,
      p99: result.p99,
      cpuMicros: NaN,
      peakRss: NaN
    }
    return { result: loop, commits: (await settledCommits(admin, db.name)) - initCommits }
  } finally {
    await db.drop()
  }
}

const runCase = async (
  def: CaseDef,
  admin: Admin | undefined,
  records: Map<string, Array<RunRecord>>,
  options: Options
): Promise<RunRecord> => {
  if (def.system.floor === "pgbench") return runPgbench(admin!, def, options)
  let sleepers = 0
  let startBudgetMs = 0
  if (def.workload === "sleepers") {
    // Sized from the system's own throughput in this run, so a slow system does not take the whole budget.
    const rate = rate64(records, def.system.id) ?? 100
    sleepers = Math.min(options.sleepers, Math.max(100, Math.floor(rate * options.sleeperSeconds)))
    startBudgetMs = Math.round(2000 + (1.25 * sleepers / rate) * 1000)
  }
  const db = def.system.storage === "postgres" ? await freshDatabase(admin!, def.system.id) : undefined
  const dir = def.system.storage === "sqlite" ? tempDir("bench-sqlite-") : undefined
  let restate: RestateServer | undefined
  try {
    if (def.system.storage === "restate") restate = await startRestate()
    const baseline = def.workload === "baseline"
    const spec: CaseSpec = {
      system: def.system.id,
      workload: baseline ? (def.system.floor === undefined ? "instant" : "floor") : def.workload,
      concurrency: def.concurrency,
      connections: def.concurrency,
      warmupMs: baseline ? 0 : options.warmupMs,
      measureMs: baseline ? 0 : options.measureMs,
      sleepers,
      startBudgetMs,
      databaseUrl: db?.url,
      sqliteFile: dir === undefined ? undefined : join(dir.path, "bench.db"),
      restate: restate === undefined ? undefined : { ingress: restate.ingress, admin: restate.admin }
    }
    const { observed, onMark } = observer(admin, db?.name, restate)
    const result = await runChild(def, spec, onMark, options)
    return {
      result,
      ...observed,
      ...(db === undefined ? {} : { commits: await settledCommits(admin!, db.name) })
    }
  } finally {
    await restate?.stop()
    await db?.drop()
    await dir?.remove()
  }
}

const describe = (def: CaseDef, record: RunRecord) => {
  const r = record.result
  if (r === undefined) return `failed: ${record.error}`
  if (r.kind === "sleepers") {
    return `${r.woke}/${r.workflows} woke, started in ${r.startSeconds.toFixed(1)} s, lateness p50 ${r.latenessP50} ms`
  }
  if (def.workload === "baseline") return `${record.commits} commits to start and stop`
  const commits = record.commits === undefined ? "" : `, ${record.commits} commits for ${r.total}`
  const trips = r.roundTrips === undefined ? "" : `, ${(r.roundTrips / r.workflows).toFixed(2)} round trips each`
  return `${Math.round(r.workflows / r.seconds)} /s, p50 ${r.p50.toFixed(2)} ms${commits}${trips}`
}

const main = async () => {
  const options = parseOptions(process.argv.slice(2))
  const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
  const admin = await connectAdmin(databaseUrl)
  const hasPgbench = (await pgbenchVersion()) !== undefined
  const unavailable = new Map<string, string>()
  for (const system of [...systems, ...floors]) {
    if (system.storage === "postgres" && admin === undefined) unavailable.set(system.id, `PostgreSQL at ${databaseUrl} unreachable`)
    if (system.floor === "pgbench" && !hasPgbench) unavailable.set(system.id, "pgbench not installed")
  }
  const selected = [...systems, ...floors].filter((s) =>
    (options.only === undefined || options.only.includes(s.id)) && !unavailable.has(s.id)
  )
  const env: Environment = await environment(admin, options, unavailable)
  const plan = cases(selected, { sleepers: options.withSleepers }).filter((c) =>
    c.workload === "baseline" ||
    ((options.workloads === undefined || options.workloads.includes(c.workload)) &&
      (options.concurrency === undefined || c.workload === "sleepers" || options.concurrency.includes(c.concurrency)))
  )
  const records = new Map<string, Array<RunRecord>>()
  const started = performance.now()
  const rounds = Math.max(options.runs, options.sleeperRuns)
  for (let round = 1; round <= rounds; round++) {
    for (const def of plan) {
      if (isClosing()) return
      const runsOfCase = def.workload === "sleepers" ? options.sleeperRuns : def.workload === "baseline" ? 1 : options.runs
      if (round > runsOfCase) continue
      const t = performance.now()
      const record = await runCase(def, admin, records, options).catch((error: unknown): RunRecord => ({
        error: error instanceof Error ? error.message : String(error)
      }))
      const list = records.get(caseKey(def)) ?? []
      list.push(record)
      records.set(caseKey(def), list)
      const elapsed = ((performance.now() - t) / 1000).toFixed(1)
      console.error(`[bench:peers] round ${round}/${rounds} ${caseKey(def)}: ${describe(def, record)} (${elapsed} s)`)
    }
  }
  const totalSeconds = (performance.now() - started) / 1000
  const markdown = render(env, selected, plan, records, totalSeconds)
  writeFileSync(options.out, markdown)
  console.log(markdown)
  console.error(`[bench:peers] written to ${options.out}`)
  await admin?.close()
}

let stopping = false
const shutdown = (code: number) => {
  if (stopping) return
  stopping = true
  void cleanupAll().finally(() => process.exit(code))
}
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => shutdown(130))
process.on("uncaughtException", (error) => {
  console.error(error)
  shutdown(1)
})

main().then(() => shutdown(0), (error) => {
  console.error(error)
  shutdown(1)
})
