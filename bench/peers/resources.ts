/**
 * What the parent of `pnpm bench:peers` sets up and tears down around each case: fresh PostgreSQL
 * databases, temporary directories, the Restate server; and what it reads from outside the measured
 * process: a database's commit counter (`pg_stat_database`), the CPU time and peak memory of server
 * processes (`/proc`), pgbench. Everything it starts is registered so `cleanupAll` can stop it on any
 * exit path (error, Ctrl-C).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import { join } from "node:path"
import pg from "pg"
import { percentile, sleep } from "./common.js"

const cleanups = new Set<() => Promise<void>>()
let closing = false

/**
 * Registers a clean-up; returns the function that runs it once (and unregisters it). Once `cleanupAll`
 * has begun, what registers is cleaned up at once (a case still starting must not leave a server behind).
 */
const registerCleanup = (cleanup: () => Promise<void>): () => Promise<void> => {
  let done = false
  const once = async () => {
    if (done) return
    done = true
    cleanups.delete(once)
    await cleanup()
  }
  cleanups.add(once)
  if (closing) void once()
  return once
}

/** Stops every server, process, database and directory still registered, and any registered later. */
export const cleanupAll = async (): Promise<void> => {
  closing = true
  await Promise.allSettled(Array.from(cleanups, (cleanup) => cleanup()))
}

/** Whether `cleanupAll` has begun (the run is being stopped). */
export const isClosing = () => closing

/** Kills a child process: SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export const stopProcess = async (child: ChildProcess, graceMs = 3000): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
  await exited
  clearTimeout(timer)
}

/** Registers a child process so it is stopped on any exit path. */
export const trackProcess = (child: ChildProcess): () => Promise<void> => {
  const stop = registerCleanup(() => stopProcess(child))
  child.once("exit", () => cleanups.delete(stop))
  return stop
}

/** A temporary directory, removed by the returned function (or on exit). */
export const tempDir = (prefix: string): { readonly path: string; readonly remove: () => Promise<void> } => {
  const path = mkdtempSync(join(os.tmpdir(), prefix))
  return { path, remove: registerCleanup(async () => rmSync(path, { recursive: true, force: true })) }
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------------------

/** A connection to the server's administrative database, for CREATE/DROP DATABASE and statistics. */
export interface Admin {
  readonly url: URL
  readonly query: <R extends object>(text: string, values?: Array<unknown>) => Promise<Array<R>>
  readonly close: () => Promise<void>
}

export const connectAdmin = async (databaseUrl: string): Promise<Admin | undefined> => {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 3000 })
  client.on("error", () => {})
  try {
    await client.connect()
  } catch {
    return undefined
  }
  return {
    url: new URL(databaseUrl),
    query: async <R extends object>(text: string, values?: Array<unknown>) =>
      (await client.query(text, values)).rows as Array<R>,
    close: () => client.end()
  }
}

let databases = 0

/** A fresh database for one case; the returned `drop` removes it (connections included). */
export const freshDatabase = async (admin: Admin, label: string) => {
  const name = `bench_peers_${label.replace(/[^a-z0-9]/g, "_")}_${process.pid}_${databases++}`
  await admin.query(`CREATE DATABASE ${name}`)
  const url = new URL(admin.url)
  url.pathname = `/${name}`
  const drop = registerCleanup(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  })
  return { name, url: url.toString(), drop }
}

/**
 * Transactions committed in a database, read once nobody is connected to it. A backend reports its
 * counters at most once a second while busy and may hold them for 10 s when idle (PostgreSQL 15), but
 * always when it exits: so the count is exact only after the last connection has closed.
 */
export const settledCommits = async (admin: Admin, database: string): Promise<number> => {
  const until = Date.now() + 15_000
  while ((await backendPids(admin, database)).length > 0) {
    if (Date.now() > until) throw new Error(`connections to ${database} still open`)
    await sleep(20)
  }
  const rows = await admin.query<{ xact_commit: string }>(
    "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
    [database]
  )
  return Number(rows[0]?.xact_commit ?? 0)
}

/** The server processes (backends) connected to a database. */
export const backendPids = async (admin: Admin, database: string): Promise<Array<number>> =>
  (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1", [database])).map((r) =>
    r.pid
  )

/** PostgreSQL's version string and pgbench's, for the report. */
export const serverVersion = async (admin: Admin): Promise<string> =>
  (await admin.query<{ server_version: string }>("SHOW server_version"))[0]?.server_version ?? "unknown"

// ---------------------------------------------------------------------------------------------------------
// /proc: CPU time and peak memory of processes this benchmark does not run itself
// ---------------------------------------------------------------------------------------------------------

const clockTicksPerSecond = 100

/** CPU time (user + system) of a process in µs, or undefined if it is gone or /proc is not there. */
export const processCpuMicros = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) * (1_000_000 / clockTicksPerSecond)
  } catch {
    return undefined
  }
}

/** Peak resident memory of a process in bytes (`VmHWM`), or undefined. */
export const processPeakRss = (pid: number): number | undefined => {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** CPU time of each of a set of processes, by pid. */
export const cpuByPid = (pids: ReadonlyArray<number>): Map<number, number> => {
  const result = new Map<number, number>()
  for (const pid of pids) {
    const cpu = processCpuMicros(pid)
    if (cpu !== undefined) result.set(pid, cpu)
  }
  return result
}

/** CPU spent between two snapshots (a process absent at the start started in between). */
export const cpuDelta = (start: Map<number, number>, end: Map<number, number>): number => {
  let total = 0
  for (const [pid, cpu] of end) total += cpu - (start.get(pid) ?? 0)
  return total
}

// ---------------------------------------------------------------------------------------------------------
// Restate server
// ---------------------------------------------------------------------------------------------------------

const restateBinary = (): string => {
  const require = createRequire(import.meta.url)
  const wrapper = createRequire(require.resolve("@restatedev/restate-server/package.json"))
  return wrapper.resolve(`@restatedev/restate-server-${os.platform()}-${os.arch()}/bin/restate-server`)
}

export interface RestateServer {
  readonly pid: number
  readonly ingress: string
  readonly admin: string
  readonly stop: () => Promise<void>
}

const waitHealthy = async (url: string, until: number) => {
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return
    } catch {
      // not listening yet
    }
    await sleep(50)
  }
  throw new Error(`${url} did not become healthy`)
}

/** Starts a Restate server on loopback with random ports and its storage in a new temporary directory. */
export const startRestate = async (): Promise<RestateServer> => {
  const dir = mkdtempSync(join(os.tmpdir(), "bench-restate-"))
  const child = spawn(
    restateBinary(),
    [
      "--no-logo",
      "--base-dir",
      dir,
      "--node-name",
      "bench",
      "--bind-ip",
      "127.0.0.1",
      "--use-random-ports",
      "true",
      "--listen-mode",
      "tcp"
    ],
    {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RESTATE_LOG_FORMAT: "json", RESTATE_DISABLE_TELEMETRY: "true" }
    }
  )
  // One clean-up for both, in order: the directory can only go once the server has stopped writing to it.
  const stop = registerCleanup(async () => {
    await stopProcess(child)
    rmSync(dir, { recursive: true, force: true })
  })
  let log = ""
  const ports = new Promise<{ ingress: number; admin: number }>((resolve, reject) => {
    let ingress: number | undefined
    let admin: number | undefined
    const onData = (chunk: Buffer) => {
      log += chunk.toString()
      for (const line of log.split("\n")) {
        if (line.includes("Ingress HTTP listening")) ingress ??= Number(/"server.port":(\d+)/.exec(line)?.[1])
        const adminMatch = /Admin API starting on: http:\/\/127\.0\.0\.1:(\d+)/.exec(line)
        if (adminMatch !== null) admin ??= Number(adminMatch[1])
      }
      if (ingress !== undefined && admin !== undefined) resolve({ ingress, admin })
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    child.once("exit", (code) => reject(new Error(`restate-server exited (${code}):\n${log.slice(-2000)}`)))
  })
  try {
    const found = await Promise.race([
      ports,
      sleep(30_000).then(() => Promise.reject(new Error(`restate-server did not start:\n${log.slice(-2000)}`)))
    ])
    const server = {
      pid: child.pid!,
      ingress: `http://127.0.0.1:${found.ingress}`,
      admin: `http://127.0.0.1:${found.admin}`,
      stop
    }
    const until = Date.now() + 30_000
    await waitHealthy(`${server.admin}/health`, until)
    await waitHealthy(`${server.ingress}/restate/health`, until)
    return server
  } catch (error) {
    await stop()
    throw error
  }
}

// ---------------------------------------------------------------------------------------------------------
// pgbench
// ---------------------------------------------------------------------------------------------------------

/** pgbench's version line, or undefined when it is not installed. */
export const pgbenchVersion = (): Promise<string | undefined> =>
  new Promise((resolve) => {
    const child = spawn("pgbench", ["--version"], { stdio: ["ignore", "pipe", "ignore"] })
    let out = ""
    child.stdout.on("data", (chunk) => (out += chunk))
    child.once("error", () => resolve(undefined))
    child.once("exit", (code) => resolve(code === 0 ? out.trim() : undefined))
  })

const runTool = (command: string, args: Array<string>, env: NodeJS.ProcessEnv): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env })
    trackProcess(child)
    let out = ""
    child.stdout!.on("data", (chunk) => (out += chunk))
    child.stderr!.on("data", (chunk) => (out += chunk))
    child.once("error", reject)
    child.once("exit", (code) => code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}:\n${out}`)))
  })

const pgbenchEnv = (databaseUrl: string): NodeJS.ProcessEnv => {
  const url = new URL(databaseUrl)
  return {
    ...process.env,
    PGHOST: url.hostname,
    PGPORT: url.port || "5432",
    PGUSER: decodeURIComponent(url.username || "postgres"),
    PGDATABASE: url.pathname.slice(1),
    ...(url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {})
  }
}

/** Creates pgbench's TPC-B tables at scale 1. */
export const pgbenchInit = async (databaseUrl: string): Promise<void> => {
  await runTool("pgbench", ["-i", "-s", "1", "-q"], pgbenchEnv(databaseUrl))
}

export interface PgbenchResult {
  readonly transactions: number
  readonly tps: number
  readonly p50: number
  readonly p99: number
}

/** TPC-B (pgbench's built-in script) with `clients` connections for `seconds`. */
export const pgbench = async (databaseUrl: string, clients: number, seconds: number): Promise<PgbenchResult> => {
  const logs = tempDir("bench-pgbench-")
  try {
    const threads = String(Math.min(clients, os.cpus().length))
    const out = await runTool(
      "pgbench",
      ["-n", "-c", String(clients), "-j", threads, "-T", String(seconds), "-l", "--log-prefix", join(logs.path, "tx")],
      pgbenchEnv(databaseUrl)
    )
    const latencies: Array<number> = []
    for (const file of readdirSync(logs.path)) {
      for (const line of readFileSync(join(logs.path, file), "utf8").split("\n")) {
        // client_id transaction_no latency_us script_no time_epoch time_us
        const fields = line.split(" ")
        if (fields.length >= 3) latencies.push(Number(fields[2]) / 1000)
      }
    }
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1] ?? NaN)
    const sorted = Float64Array.from(latencies).sort()
    return { transactions: latencies.length, tps, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
  } finally {
    await logs.remove()
  }
}
