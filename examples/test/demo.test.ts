/**
 * The demo (`pnpm start`, examples/demo/main.ts) end to end, as a process, with real child processes: a
 * shard manager and 3 pods on SQLite files, 100 workflows (`DEMO_WORKFLOWS`), one pod killed with SIGKILL
 * half-way. Its summary (also written as JSON through `DEMO_REPORT`) must show every workflow completed
 * with the right result and no activity run twice but those cut off by the kill; afterwards its processes
 * are gone and its temporary directory removed. And a SIGINT in the middle of a run stops it the same way.
 *
 * Every wait is for a line of the demo's output or for its exit, each bounded on the real clock.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))
const scratch = mkdtempSync(join(tmpdir(), "demo-test-"))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The demo as `pnpm start` runs it (tsx, source condition), with `env` added. */
class Demo {
  readonly process: ChildProcess
  readonly lines: Array<string> = []
  private readonly waiters: Array<() => void> = []
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>

  constructor(env: Record<string, string>) {
    this.process = spawn(process.execPath, ["--conditions=source", "--import", "tsx", "examples/demo/main.ts"], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const onLine = (line: string) => {
      this.lines.push(line)
      for (const waiter of this.waiters.splice(0)) waiter()
    }
    createInterface({ input: this.process.stdout! }).on("line", onLine)
    createInterface({ input: this.process.stderr! }).on("line", onLine)
    this.exited = new Promise((resolve) => this.process.on("exit", (code, signal) => resolve({ code, signal })))
  }

  /** The first line matching `pattern` (waits for it at most `millis`). */
  line(pattern: RegExp, millis: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line ${pattern} in ${millis} ms:\n${this.lines.join("\n")}`)), millis)
      const check = () => {
        for (const line of this.lines) {
          const match = pattern.exec(line)
          if (match !== null) {
            clearTimeout(timer)
            return resolve(match)
          }
        }
        this.waiters.push(check)
      }
      check()
    })
  }

  /** Waits for the exit, at most `millis` (then kills the demo and fails). */
  exit(millis: number) {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.process.kill("SIGKILL")
        reject(new Error(`the demo did not exit in ${millis} ms:\n${this.lines.join("\n")}`))
      }, millis)
    })
    return Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer))
  }
}

describe("the demo (pnpm start)", () => {
  it("100 workflows on a manager and 3 pod processes, one killed: all complete, none twice, everything cleaned up", async () => {
    const report = join(scratch, "report.json")
    const demo = new Demo({ DEMO_WORKFLOWS: "100", DEMO_REPORT: report })
    const exit = await demo.exit(170_000)
    const output = demo.lines.join("\n")
    expect(exit, output).toEqual({ code: 0, signal: null })
    expect(output).toContain("Summary")
    expect(output).toMatch(/workflows: +100 submitted, 100 completed, 100 with the right result/)
    expect(output).toContain("result:     OK")
    const summary = JSON.parse(readFileSync(report, "utf8"))
    expect(summary.ok).toBe(true)
    expect(summary.completed).toBe(100)
    expect(summary.rightResult).toBe(100)
    expect(summary.problems).toEqual([])
    // Every activity ran once, but those cut off by the kill (at most one per workflow it left unfinished) and
    // those cut off on a pod that dropped its shards when its lease was not renewed in time (a machine too busy
    // to answer heartbeats for seconds; the demo prints it), each run again with the same idempotency key.
    expect(summary.activities).toBe(300)
    expect(summary.bodyRuns).toBe(300 + summary.cutOffByKill + summary.cutOffByDrop)
    expect(summary.failover).not.toBe(null)
    expect(summary.cutOffByKill).toBeLessThanOrEqual(summary.failover.unfinished)
    // The killed pod's shards moved, and workflows of those shards completed on the other pods.
    expect(summary.failover.shardsMoved).toBeGreaterThan(0)
    expect(summary.completedByPod["pod-1"] + summary.completedByPod["pod-2"] + summary.completedByPod["pod-3"]).toBe(100)
    expect(summary.pids.length).toBe(4)
    expect(summary.pids.filter(alive)).toEqual([])
    expect(existsSync(summary.dir)).toBe(false)
  }, 180_000)

  it("SIGINT in the middle of a run stops the pods and the manager and removes the directory", async () => {
    const demo = new Demo({ DEMO_WORKFLOWS: "1000" })
    const dir = (await demo.line(/files in (\S+)$/, 120_000))[1]!
    const manager = Number((await demo.line(/manager up \(pid (\d+)\)/, 1_000))[1])
    const pods = await demo.line(/pod-1 \(pid (\d+)\).*pod-2 \(pid (\d+)\).*pod-3 \(pid (\d+)\)/, 120_000)
    await demo.line(/submitted +\d+ +completed +[1-9]/, 60_000)
    const pids = [manager, Number(pods[1]), Number(pods[2]), Number(pods[3])]
    expect(pids.filter(alive)).toEqual(pids)
    expect(existsSync(dir)).toBe(true)
    demo.process.kill("SIGINT")
    const exit = await demo.exit(60_000)
    expect(exit, demo.lines.join("\n")).toEqual({ code: 130, signal: null })
    expect(demo.lines.join("\n")).toContain("interrupted: processes stopped, files removed")
    expect(pids.filter(alive)).toEqual([])
    expect(existsSync(dir)).toBe(false)
  }, 180_000)
})
