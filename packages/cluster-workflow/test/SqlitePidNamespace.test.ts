/**
 * SQLite process liveness judges an engine dead by its pid on "this host". A process in another PID
 * namespace (a container with the host's name, sharing the SQLite file on a volume) registers a pid that
 * means nothing in this namespace (here 1): it must not be judged by it (before the fix this engine saw
 * that pid as another process and released the live engine's claims at once). The host recorded on Linux
 * carries the PID namespace and the boot id; another namespace or kernel means "cannot tell".
 *
 * The child runs in a real PID namespace (`unshare -p -f --mount-proc`, needs root; skipped otherwise);
 * the judgement of recorded hosts is also checked directly, without root.
 */
import { DurableExecutionJournal } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import { describe, expect, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { Context, Effect, Layer, Option } from "effect"
import { readFileSync, readlinkSync } from "node:fs"
import { hostname } from "node:os"
import { tempDir, uniquePrefix } from "./utils/journals.js"

const canUnshare = process.platform === "linux" && process.getuid?.() === 0 &&
  spawnSync("unshare", ["-p", "-f", "--mount-proc", "true"]).status === 0

describe.skipIf(!canUnshare)("SQLite process liveness across PID namespaces", () => {
  it.live("a live engine in another PID namespace on this host keeps its claims", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "ns.db")
      const prefix = uniquePrefix("ns")
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn("unshare", [
            "-p",
            "-f",
            "--mount-proc",
            process.execPath,
            "--conditions=source",
            "--import",
            "tsx",
            join(__dirname, "process", "pidNamespaceChild.ts")
          ], { env: { ...process.env, PIDNS_CHILD: JSON.stringify({ filename, prefix }) }, stdio: ["pipe", "pipe", "inherit"] })
        ),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      const ready = yield* Effect.async<string>((resume) => {
        createInterface({ input: child.stdout! }).on("line", (line) => {
          if (line.startsWith("ready")) resume(Effect.succeed(line))
        })
      }).pipe(Effect.timeout("30 seconds"))
      expect(ready).toMatch(/^ready \d+$/)
      const ctx = yield* Layer.build(Sqlite.layer({ filename, prefix }))
      const journal = Context.get(ctx, DurableExecutionJournal.DurableExecutionJournal)
      const me = yield* journal.registerEngine!("B", ["wf"])
      // the child is alive (it waits on its stdin): none of its claims may be released
      expect(child.exitCode).toBe(null)
      const released = yield* journal.releaseDeadClaims!(me)
      const row = Option.getOrThrow(yield* journal.get({ workflow: "wf", executionId: "x1" }))
      expect({ released, owner: row.claimOwner }).toEqual({ released: 0, owner: "A" })
    }).pipe(Effect.scoped), 60_000)
})

const onLinux = process.platform === "linux" && (() => {
  try {
    readlinkSync("/proc/self/ns/pid")
    readFileSync("/proc/sys/kernel/random/boot_id")
    return true
  } catch {
    return false
  }
})()

describe("SQLite process liveness: the recorded host", () => {
  const { isAlive, host, pid, startTime } = Sqlite.processLiveness
  it.skipIf(!onLinux)("on Linux the host carries this process's PID namespace and boot id", () => {
    const namespace = readlinkSync("/proc/self/ns/pid")
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
    expect(host).toBe(`${hostname()}#${namespace}#${boot}`)
  })
  it("this process is alive; a pid of another PID namespace or kernel cannot be told; another host cannot", () => {
    expect(isAlive(host, pid, startTime)).toBe(true)
    expect(isAlive("another-host", pid, startTime)).toBe(undefined)
    if (onLinux) {
      const [name, namespace, boot] = host.split("#")
      // this process's pid, registered in another PID namespace: means nothing here
      expect(isAlive(`${name}#pid:[1]#${boot}`, pid, startTime)).toBe(undefined)
      // under another kernel (another machine of this name, or before a reboot)
      expect(isAlive(`${name}#${namespace}#00000000-0000-0000-0000-000000000000`, pid, startTime)).toBe(undefined)
      // recorded by an earlier release (the name alone): judged by the pid, as before
      expect(isAlive(name!, pid, startTime)).toBe(true)
    }
  })
})
