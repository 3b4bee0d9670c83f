/**
 * Review of issue 13's demo: `pnpm start` runs the demo under the tsx CLI (pnpm -> tsx -> node). A Ctrl-C
 * in a terminal sends SIGINT to the whole foreground process group, and tsx also relays the signal to its
 * node child: the demo gets SIGINT twice. Effect's NodeRuntime.runMain removes its SIGINT listener on the
 * first signal, so the second one kills the demo at once (Node's default action) before its finalizers
 * remove the temporary directory (seen by hand: 2 of 3 Ctrl-Cs right after "manager up" under `pnpm start`
 * left /tmp/effect-cluster-demo-* with journal.db, manager.db and the bundle, and printed nothing).
 *
 * Here the demo runs as in demo.test.ts (node --import tsx, one process) and gets the two SIGINTs itself.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))

it("a Ctrl-C as a terminal delivers it under pnpm start (SIGINT twice) still removes the demo's files", async () => {
  const demo = spawn(process.execPath, ["--conditions=source", "--import", "tsx", "examples/demo/main.ts"], {
    cwd: root,
    env: { ...process.env, DEMO_WORKFLOWS: "3000" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    demo.on("exit", (code, signal) => resolve({ code, signal }))
  )
  const dir = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "manager up" line:\n${lines.join("\n")}`)), 120_000)
    const onLine = (line: string) => {
      lines.push(line)
      const match = /manager up .*files in (\S+)/.exec(line)
      if (match !== null) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    }
    createInterface({ input: demo.stdout! }).on("line", onLine)
    createInterface({ input: demo.stderr! }).on("line", onLine)
  })
  expect(existsSync(dir)).toBe(true)
  // The terminal's SIGINT, then the one the tsx CLI relays to its child.
  demo.kill("SIGINT")
  await new Promise((resolve) => setTimeout(resolve, 100))
  demo.kill("SIGINT")
  const exit = await Promise.race([
    exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the demo did not exit in 60 s")), 60_000))
  ])
  expect({ exit, dirLeft: existsSync(dir), interrupted: lines.some((line) => /interrupted/.test(line)) }).toEqual({
    exit: { code: 130, signal: null },
    dirLeft: false,
    interrupted: true
  })
}, 200_000)
