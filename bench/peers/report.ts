/**
 * The markdown report of `pnpm bench:peers`: the machine, the exact versions, and one table per workload
 * (each figure the median of the runs, with min-max).
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { CaseResult, LoopResult, SleepersResult } from "./common.js"
import { type Admin, pgbenchVersion, serverVersion } from "./resources.js"
import { type CaseDef, caseKey, type SystemDef } from "./systems.js"

const here = dirname(fileURLToPath(import.meta.url))
const root = dirname(dirname(here))

/** One run of one case: what the child reported and what the parent observed around it. */
export interface RunRecord {
  readonly result?: CaseResult
  readonly error?: string
  readonly commits?: number
  readonly serverCpuMicros?: number
  readonly serverPeakRss?: number
}

export interface Environment {
  readonly date: string
  readonly command: string
  readonly machine: string
  readonly postgres: string
  readonly loadBefore: string
  readonly versions: ReadonlyArray<string>
  readonly settings: string
  readonly unavailable: ReadonlyMap<string, string>
}

const loadAverage = () => os.loadavg().map((l) => l.toFixed(2)).join(", ")

/** A package's version as installed in a node_modules (read from disk: not every package exports package.json). */
const versionIn = (dir: string, name: string): string => {
  try {
    return (JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")) as { version: string })
      .version
  } catch {
    return "not installed"
  }
}

const projectVersion = (dir: string) =>
  (JSON.parse(readFileSync(join(root, "packages", dir, "package.json"), "utf8")) as { version: string }).version

const gitHead = () => {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "packages"], { cwd: root, encoding: "utf8" }).trim()
    return dirty.length > 0 ? `${head} + uncommitted changes in packages/` : head
  } catch {
    return "unknown commit"
  }
}

export const environment = async (
  admin: Admin | undefined,
  options: {
    readonly runs: number
    readonly measureMs: number
    readonly warmupMs: number
    readonly sleepers: number
    readonly sleeperRuns: number
  },
  unavailable: ReadonlyMap<string, string>
): Promise<Environment> => {
  const cpus = os.cpus()
  const peers = [
    "effect",
    "@effect/workflow",
    "@effect/cluster",
    "@effect/sql",
    "@effect/sql-pg",
    "@dbos-inc/dbos-sdk",
    "@restatedev/restate-sdk",
    "@restatedev/restate-server",
    "pg"
  ]
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    command: `pnpm bench:peers ${process.argv.slice(2).join(" ")}`.trim(),
    machine: `${cpus[0]?.model.trim() ?? "unknown CPU"}, ${cpus.length} cores, ${
      Math.round(os.totalmem() / 1024 ** 3)
    } GB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`,
    postgres: admin === undefined
      ? "unreachable"
      : `PostgreSQL ${await serverVersion(admin)}${
        (await pgbenchVersion()) === undefined ? "" : `, ${await pgbenchVersion()}`
      }`,
    loadBefore: loadAverage(),
    versions: [
      `this project: @effect-cluster/cluster ${projectVersion("cluster")}, @effect-cluster/cluster-workflow ${
        projectVersion("cluster-workflow")
      } at ${gitHead()} (source, workspace's effect ${versionIn(root, "effect")})`,
      `peers (bench/peers/pnpm-lock.yaml): ${peers.map((p) => `${p} ${versionIn(here, p)}`).join(", ")}`
    ],
    settings: `${options.runs} run(s) per case, each in a fresh process with fresh state; ${
      options.warmupMs / 1000
    } s warm-up, ${options.measureMs / 1000} s measured; sleepers: up to ${
      options.sleepers.toLocaleString("en-US")
    }, ${options.sleeperRuns} run(s)`,
    unavailable
  }
}

// ---------------------------------------------------------------------------------------------------------
// formatting
// ---------------------------------------------------------------------------------------------------------

const count = (n: number) =>
  Number.isFinite(n) ? (n >= 100 ? Math.round(n).toLocaleString("en-US") : n >= 10 ? n.toFixed(1) : n.toFixed(2)) : "-"
const ms = (n: number) => Number.isFinite(n) ? (n >= 1000 ? Math.round(n).toLocaleString("en-US") : count(n)) : "-"
const mb = (bytes: number) => Number.isFinite(bytes) ? `${Math.round(bytes / 1024 / 1024)}` : "-"

/** Median of the runs, with min-max when there are several. */
const cell = (values: ReadonlyArray<number>, format: (n: number) => string) => {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (finite.length === 0) return "-"
  const median = finite[Math.floor((finite.length - 1) / 2)]!
  return finite.length === 1 || format(finite[0]!) === format(finite[finite.length - 1]!)
    ? format(median)
    : `${format(median)} (${format(finite[0]!)}-${format(finite[finite.length - 1]!)})`
}

type Loop = { readonly result: LoopResult } & RunRecord
type Sleep = { readonly result: SleepersResult } & RunRecord

const loops = (records: ReadonlyArray<RunRecord> | undefined): Array<Loop> =>
  (records ?? []).filter((r): r is Loop => r.result?.kind === "loop")

const failures = (records: ReadonlyArray<RunRecord> | undefined) =>
  (records ?? []).filter((r) => r.error !== undefined).length

/** Commits per workflow: the case's, less starting and stopping the system, over all its workflows. */
const commitsPer = (record: RunRecord & { readonly result: CaseResult }, baseline: number) =>
  record.commits === undefined ? NaN : (record.commits - baseline) / record.result.total

const loopRow = (
  label: string,
  concurrency: number,
  records: ReadonlyArray<RunRecord> | undefined,
  activities: number,
  baseline: number
) => {
  const runs = loops(records)
  const failed = failures(records)
  if (runs.length === 0) return `| ${label} | ${concurrency} | failed (${failed} of ${failed} runs) |||||||||`
  const rate = runs.map((r) => r.result.workflows / r.result.seconds)
  const per = (f: (r: Loop) => number | undefined) => runs.map((r) => (f(r) ?? NaN) / r.result.workflows)
  return [
    `| ${label}${failed > 0 ? ` (${failed} run(s) failed)` : ""}`,
    concurrency,
    cell(rate, count),
    activities === 0 ? "-" : cell(rate.map((x) => x * activities), count),
    cell(runs.map((r) => r.result.p50), ms),
    cell(runs.map((r) => r.result.p99), ms),
    cell(per((r) => r.result.cpuMicros / 1000), ms),
    cell(per((r) => r.serverCpuMicros === undefined ? undefined : r.serverCpuMicros / 1000), ms),
    cell(runs.map((r) => commitsPer(r, baseline)), count),
    cell(runs.map((r) => r.result.peakRss), mb) +
    (runs.some((r) => r.serverPeakRss !== undefined) ? ` + ${cell(runs.map((r) => r.serverPeakRss ?? NaN), mb)}` : ""),
    ""
  ].join(" | ").trim()
}

const loopHeader = (unit: string) => [
  `| system | concurrency | ${unit}/s | activities/s | p50 ms | p99 ms | CPU ms/${unit} (app) | CPU ms/${unit} (DB or server) | commits/${unit} | peak RSS MB |`,
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
]

const sleepersRow = (system: SystemDef, records: ReadonlyArray<RunRecord> | undefined, baseline: number) => {
  const runs = (records ?? []).filter((r): r is Sleep => r.result?.kind === "sleepers")
  const failed = failures(records)
  if (runs.length === 0) return `| ${system.label} | failed (${failed} run(s)) |||||||||`
  const late = runs.some((r) => !r.result.startedBeforeDeadline)
  const per = (f: (r: Sleep) => number | undefined) => runs.map((r) => (f(r) ?? NaN) / r.result.workflows)
  return [
    `| ${system.label}`,
    cell(runs.map((r) => r.result.workflows), count),
    cell(runs.map((r) => r.result.woke), count),
    cell(runs.map((r) => r.result.workflows / r.result.startSeconds), count) + (late ? " (some started after the deadline)" : ""),
    cell(runs.map((r) => r.result.latenessP50), ms),
    cell(runs.map((r) => r.result.latenessP99), ms),
    cell(runs.map((r) => r.result.latenessMax), ms),
    cell(per((r) => r.result.cpuMicros / 1000), ms),
    cell(per((r) => r.serverCpuMicros === undefined ? undefined : r.serverCpuMicros / 1000), ms),
    cell(runs.map((r) => commitsPer(r, baseline)), count),
    cell(runs.map((r) => r.result.peakRss), mb) +
    (runs.some((r) => r.serverPeakRss !== undefined) ? ` + ${cell(runs.map((r) => r.serverPeakRss ?? NaN), mb)}` : ""),
    ""
  ].join(" | ").trim()
}

const errorsOf = (plan: ReadonlyArray<CaseDef>, records: ReadonlyMap<string, ReadonlyArray<RunRecord>>) => {
  const lines: Array<string> = []
  for (const def of plan) {
    for (const record of records.get(caseKey(def)) ?? []) {
      if (record.error !== undefined) {
        lines.push(`- ${caseKey(def)}: ${record.error.split("\n").slice(0, 6).join(" / ").slice(0, 600)}`)
      }
    }
  }
  return lines
}

export const render = (
  env: Environment,
  selected: ReadonlyArray<SystemDef>,
  plan: ReadonlyArray<CaseDef>,
  records: ReadonlyMap<string, ReadonlyArray<RunRecord>>,
  totalSeconds: number
): string => {
  const workflowSystems = selected.filter((s) => s.floor === undefined)
  const baseline = (system: SystemDef) =>
    records.get(caseKey({ system, workload: "baseline", concurrency: 1 }))?.[0]?.commits ?? 0
  const has = (def: { system: SystemDef; workload: CaseDef["workload"]; concurrency: number }) =>
    plan.some((p) => caseKey(p) === caseKey(def))
  const out: Array<string> = [
    `# effect-cluster against its peers (\`pnpm bench:peers\`)`,
    "",
    `- date: ${env.date}; command: \`${env.command}\`; whole run ${Math.round(totalSeconds)} s`,
    `- machine: ${env.machine}; ${env.postgres}`,
    `- load average (1, 5, 15 min) before: ${env.loadBefore}; after: ${loadAverage()}`,
    ...env.versions.map((v) => `- ${v}`),
    `- ${env.settings}`,
    ...Array.from(env.unavailable, ([id, why]) => `- not run: ${id} (${why})`),
    ""
  ]
  for (const [workload, title] of [
    ["instant", "3-activity workflow, activities return at once"],
    ["io", "3-activity workflow, each activity sleeps 20 ms (I/O-bound)"]
  ] as const) {
    out.push(`## ${title}`, "", ...loopHeader("wf"))
    for (const system of workflowSystems) {
      for (const concurrency of [1, 64]) {
        const def = { system, workload, concurrency }
        if (has(def)) out.push(loopRow(system.label, concurrency, records.get(caseKey(def)), 3, baseline(system)))
      }
    }
    out.push("")
  }
  const floorSystems = selected.filter((s) => s.floor !== undefined)
  if (floorSystems.length > 0) {
    out.push("## Floor: one commit per operation", "", ...loopHeader("op"))
    for (const system of floorSystems) {
      for (const concurrency of [1, 10]) {
        const def = { system, workload: "floor" as const, concurrency }
        if (has(def)) out.push(loopRow(system.label, concurrency, records.get(caseKey(def)), 0, baseline(system)))
      }
    }
    out.push("")
  }
  if (workflowSystems.some((system) => has({ system, workload: "sleepers", concurrency: 64 }))) {
    out.push(
      "## Sleepers: workflows suspended on a durable sleep, woken together",
      "",
      "| system | workflows | woke | starts/s | lateness p50 ms | p99 ms | max ms | CPU ms/wf (app) | CPU ms/wf (DB or server) | commits/wf | peak RSS MB |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for (const system of workflowSystems) {
      const def = { system, workload: "sleepers" as const, concurrency: 64 }
      if (has(def)) out.push(sleepersRow(system, records.get(caseKey(def)), baseline(system)))
    }
    out.push("")
  }
  out.push(...targets(records))
  out.push(...notes)
  const errors = errorsOf(plan, records)
  if (errors.length > 0) out.push("", "Failed runs:", "", ...errors)
  return out.join("\n") + "\n"
}

/** The median of one measure over a case's runs, by system id (NaN when the case did not run). */
const medianOf = (
  records: ReadonlyMap<string, ReadonlyArray<RunRecord>>,
  key: string,
  measure: (r: LoopResult) => number
) => {
  const values = loops(records.get(key)).map((r) => measure(r.result)).sort((a, b) => a - b)
  return values.length === 0 ? NaN : values[Math.floor((values.length - 1) / 2)]!
}

/** Issue 14's targets, each a ratio within this run (so the machine's speed cancels out). */
const targets = (records: ReadonlyMap<string, ReadonlyArray<RunRecord>>): Array<string> => {
  const activitiesPerSecond = (r: LoopResult) => (3 * r.workflows) / r.seconds
  const p50 = (r: LoopResult) => r.p50
  const pgP50 = medianOf(records, "project-pg|instant|1", p50)
  const insertP50 = medianOf(records, "floor-pg|floor|1", p50)
  const pg64 = medianOf(records, "project-pg|instant|64", activitiesPerSecond)
  const dbos64 = medianOf(records, "dbos|instant|64", activitiesPerSecond)
  const restate64 = medianOf(records, "restate|instant|64", activitiesPerSecond)
  const memory64 = medianOf(records, "project-memory|instant|64", activitiesPerSecond)
  const effectWorkflow64 = medianOf(records, "effect-workflow|instant|64", activitiesPerSecond)
  const sqlite64 = medianOf(records, "project-sqlite|instant|64", activitiesPerSecond)
  const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`
  const lines = [
    Number.isFinite(pgP50) &&
    `| PostgreSQL, concurrency 1: p50 | ${ms(pgP50)} ms | <= 5 ms |`,
    Number.isFinite(pgP50 / insertP50) &&
    `| PostgreSQL, concurrency 1: p50 / p50 of one single-row INSERT | ${ratio(pgP50, insertP50)} | <= 6x |`,
    Number.isFinite(pg64) && `| PostgreSQL, concurrency 64: activities/s | ${count(pg64)} | >= 10,000 |`,
    Number.isFinite(pg64 / dbos64) && `| PostgreSQL, concurrency 64: activities/s / DBOS's | ${ratio(pg64, dbos64)} | >= 20x |`,
    Number.isFinite(pg64 / restate64) &&
    `| PostgreSQL, concurrency 64: activities/s / Restate's | ${ratio(pg64, restate64)} | >= 20x |`,
    Number.isFinite(memory64 / effectWorkflow64) &&
    `| in-memory, concurrency 64: activities/s / @effect/workflow's | ${ratio(memory64, effectWorkflow64)} | >= 50x |`,
    Number.isFinite(sqlite64) && `| SQLite file, concurrency 64: activities/s | ${count(sqlite64)} | >= 8,000 |`
  ].filter((line): line is string => typeof line === "string")
  return lines.length === 0 ? [] : [
    "## Issue 14's targets, from this run (instant workload)",
    "",
    "| measure | this run | target |",
    "|---|---:|---:|",
    ...lines,
    ""
  ]
}

const notes = [
  "How to read it:",
  "",
  "- The workflow is the seed program's: 3 activities built inside the body on every call, a message (payload)",
  "  constructed per call, a unique id per workflow, each started from outside the framework and awaited (one",
  "  `runPromise` per workflow for the Effect libraries, `DBOS.startWorkflow(...)` + `getResult()` for DBOS, an",
  "  HTTP call to the ingress for Restate). Concurrency is the number of callers, each starting its next",
  "  workflow when the previous one returns. Latency is measured at the caller.",
  "- CPU ms/wf (app) is the benchmark process (the engine, the client, for Restate also the SDK endpoint);",
  "  CPU (DB or server) is PostgreSQL's backends of the case's database, or the Restate server process.",
  "  Commits/wf: `pg_stat_database.xact_commit` of the case's fresh database once its last connection has",
  "  closed (PostgreSQL reports a backend's counters reliably only when it exits), less the commits of",
  "  starting and stopping the same system with no workflow (one baseline run per system), over every",
  "  workflow the process ran (warm-up included). Background work (polling, lease renewal) is included.",
  "- Peak RSS is the benchmark process over its whole life (Node, the loaded modules, the client); `+ N` is",
  "  the Restate server's.",
  "- Sleepers: N workflows are started (64 callers, each start awaited, not the result); each sleeps",
  "  durably until one common deadline, then runs a last step; lateness is from the deadline to that step.",
  "  N is capped for systems that would take too long to start them (sized from their own concurrency-64",
  "  throughput in this run). `@effect/workflow`'s in-memory engine keeps its timers in memory; DBOS and",
  "  Restate's SDK keep a sleeping workflow's code waiting in the process (DBOS.sleep records the wake-up",
  "  time durably; Restate's server holds the timer and resumes the invocation).",
  "- The floor rows run no workflow: one operation is one committed INSERT (or one pgbench TPC-B transaction)."
]
