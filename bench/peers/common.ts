/**
 * The part of `pnpm bench:peers` every system's child process shares: the case it is asked to run, the
 * drivers of the workloads (a closed loop at a fixed concurrency; N sleepers woken together), and the
 * protocol with the parent (bench/peers/index.ts). Node built-ins only, so both sides can import it: the
 * peers' scripts (bench/peers/systems/*, resolving bench/peers/node_modules) and this project's script
 * (bench/peers-project.ts, resolving the workspace's node_modules).
 *
 * Protocol, on the child's stdout: `MARK start` and `MARK end` around the measured window (the parent
 * answers `GO` on stdin once it has read the CPU time of the database's backends or of the server), then
 * one `RESULT {json}` line. A case with no warm-up and no measured time runs no workflow: the parent runs
 * it to count what starting and stopping a system costs (its baseline of database commits).
 */
import { createInterface } from "node:readline"

/** The workloads. `instant`: 3 activities that return at once; `io`: 3 activities that each sleep 20 ms. */
export type Workload = "instant" | "io" | "sleepers" | "floor"

/** What the parent asks a child to run (JSON in `BENCH_CASE`). */
export interface CaseSpec {
  readonly system: string
  readonly workload: Workload
  readonly concurrency: number
  readonly warmupMs: number
  readonly measureMs: number
  /** sleepers: how many workflows, and how long after the first start their common deadline falls. */
  readonly sleepers: number
  readonly startBudgetMs: number
  /** A fresh PostgreSQL database for this case alone (dropped afterwards by the parent). */
  readonly databaseUrl?: string | undefined
  /** A fresh SQLite file in a temporary directory (removed afterwards by the parent). */
  readonly sqliteFile?: string | undefined
  /** Restate: the server the parent started for this case. */
  readonly restate?: { readonly ingress: string; readonly admin: string } | undefined
  /** floor: connections of the client pool. */
  readonly connections?: number | undefined
}

/** What a closed-loop case measured (times in ms, CPU in µs of this process). */
export interface LoopResult {
  readonly kind: "loop"
  /** Workflows run in the measured window; `total` adds the warm-up's. */
  readonly workflows: number
  readonly total: number
  readonly seconds: number
  readonly p50: number
  readonly p99: number
  readonly cpuMicros: number
  readonly peakRss: number
  /** Statements sent to the database in the measured window, when the child counts them (this project's). */
  readonly roundTrips?: number | undefined
}

/** What a sleepers case measured: lateness is from the common deadline to each workflow's last step. */
export interface SleepersResult {
  readonly kind: "sleepers"
  readonly workflows: number
  readonly total: number
  readonly woke: number
  readonly startSeconds: number
  readonly startedBeforeDeadline: boolean
  readonly latenessP50: number
  readonly latenessP99: number
  readonly latenessMax: number
  readonly cpuMicros: number
  readonly peakRss: number
}

export type CaseResult = LoopResult | SleepersResult

/** The case of this child process. */
export const readSpec = (): CaseSpec => {
  const raw = process.env.BENCH_CASE
  if (raw === undefined) throw new Error("BENCH_CASE is not set: run `pnpm bench:peers` from the repository root")
  return JSON.parse(raw) as CaseSpec
}

/** An id no other process of this benchmark uses, for workflow ids. */
export const runTag = `${process.pid.toString(36)}${Date.now().toString(36)}`

/** Peak resident memory of this process so far, bytes. */
export const peakRss = () => process.resourceUsage().maxRSS * 1024

export const percentile = (sorted: ArrayLike<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

let stdinLines: AsyncIterator<string> | undefined

/** Tells the parent where the measured window starts or ends and waits for its `GO`. */
export const mark = async (name: "start" | "end"): Promise<void> => {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  process.stdout.write(`MARK ${name}\n`)
  for (;;) {
    const line = await stdinLines.next()
    if (line.done === true) throw new Error("the parent closed stdin")
    if (line.value.trim() === "GO") return
  }
}

/**
 * Runs a case's main function and sends its result to the parent; exits either way, once stdout is
 * flushed (some peers leave background timers that would keep the process up).
 */
export const main = (run: (spec: CaseSpec) => Promise<CaseResult>): void => {
  run(readSpec()).then(
    (result) => process.stdout.write(`RESULT ${JSON.stringify(result)}\n`, () => process.exit(0)),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}

/**
 * The closed loop: `concurrency` callers, each starting a workflow and awaiting its result, again and
 * again, first for the warm-up, then for the measured window. `call(i)` runs workflow number `i` (unique in
 * the process) from outside any framework, as an HTTP handler would.
 */
export const closedLoop = async (
  spec: CaseSpec,
  call: (i: number) => Promise<void>,
  /** Statements sent to the database so far, when the child can count them. */
  statements?: () => number
): Promise<LoopResult> => {
  let next = 0
  const caller = async (until: number, latencies: Array<number> | undefined) => {
    let done = 0
    while (performance.now() < until) {
      const i = next++
      const t = performance.now()
      await call(i)
      latencies?.push(performance.now() - t)
      done++
    }
    return done
  }
  const callers = (until: number, latencies?: Array<number>) =>
    Promise.all(Array.from({ length: spec.concurrency }, () => caller(until, latencies)))
  const warmedUp = (await callers(performance.now() + spec.warmupMs)).reduce((a, b) => a + b, 0)
  await mark("start")
  const latencies: Array<number> = []
  const cpu = process.cpuUsage()
  const statementsAtStart = statements?.()
  const start = performance.now()
  const counts = await callers(start + spec.measureMs, latencies)
  const seconds = (performance.now() - start) / 1000
  const used = process.cpuUsage(cpu)
  const roundTrips = statements === undefined ? undefined : statements() - statementsAtStart!
  await mark("end")
  const sorted = Float64Array.from(latencies).sort()
  const workflows = counts.reduce((a, b) => a + b, 0)
  return {
    kind: "loop",
    workflows,
    total: warmedUp + workflows,
    seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    cpuMicros: used.user + used.system,
    peakRss: peakRss(),
    roundTrips
  }
}

/** When each sleeper ran its last step (epoch ms), filled by the workflows of a sleepers case. */
export const wokeAt = new Map<string, number>()

/**
 * The sleepers: `spec.sleepers` workflows started (64 at a time, each start awaited, none awaited to the
 * end), each sleeping durably until one common deadline, then running one last step that records the time
 * in `wokeAt`. `start(id, wakeAt)` starts one; the deadline falls `spec.startBudgetMs` after the first start.
 */
export const sleepers = async (
  spec: CaseSpec,
  start: (id: string, wakeAt: number) => Promise<void>
): Promise<SleepersResult> => {
  const n = spec.sleepers
  await mark("start")
  const cpu = process.cpuUsage()
  const started = performance.now()
  const deadline = Date.now() + spec.startBudgetMs
  let next = 0
  await Promise.all(Array.from({ length: Math.min(64, n) }, async () => {
    while (next < n) await start(`nap-${runTag}-${next++}`, deadline)
  }))
  const startSeconds = (performance.now() - started) / 1000
  const startedBeforeDeadline = Date.now() < deadline
  // Every sleeper must wake; a system that loses some shows it in the `woke` count after a generous limit.
  const giveUp = Math.max(deadline, Date.now()) + 60_000 + n * 10
  while (wokeAt.size < n && Date.now() < giveUp) await sleep(10)
  const used = process.cpuUsage(cpu)
  await mark("end")
  const lateness = Float64Array.from(wokeAt.values(), (t) => t - deadline).sort()
  return {
    kind: "sleepers",
    workflows: n,
    total: n,
    woke: wokeAt.size,
    startSeconds,
    startedBeforeDeadline,
    latenessP50: percentile(lateness, 0.5),
    latenessP99: percentile(lateness, 0.99),
    latenessMax: lateness.length === 0 ? NaN : lateness[lateness.length - 1]!,
    cpuMicros: used.user + used.system,
    peakRss: peakRss()
  }
}

/** The value each of the 3 activities returns, and what the workflow returns: the tracking code. */
export const amountDue = 100
export const trackingCode = 1

/** The body of an activity of the workload: returns at once (`instant`) or after 20 ms (`io`). */
export const activityBody = <A>(workload: Workload, value: A): Promise<A> =>
  workload === "io" ? sleep(20).then(() => value) : Promise.resolve(value)
