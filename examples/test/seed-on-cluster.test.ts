/**
 * The seed program on the cluster: examples/process-payment.ts with its journal layer replaced by
 * `seedOnCluster` (examples/seed-on-cluster.ts) and nothing else changed, run as a process twice on one
 * SQLite file. The first run executes the workflow on the pod; the second finds it completed in the
 * journal and prints the same tracking code without running an activity.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const inMemory = "Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory)"

describe("the seed program on the cluster (only its layer changes)", () => {
  it("runs on a pod of the cluster engine, then answers from the journal in a new process", () => {
    const seed = readFileSync(join(root, "examples/process-payment.ts"), "utf8")
    expect(seed.split(inMemory).length).toBe(2)
    const onCluster = `import { seedOnCluster } from "./seed-on-cluster.js"\n` +
      seed.replace(inMemory, "Effect.provide(seedOnCluster(process.env.SEED_DATABASE!))")
    const dir = mkdtempSync(join(tmpdir(), "seed-cluster-"))
    const file = join(root, "examples", `.seed-on-cluster-${process.pid}.ts`)
    writeFileSync(file, onCluster)
    const run = () =>
      execFileSync(process.execPath, ["--conditions=source", "--import", "tsx", file], {
        cwd: root,
        encoding: "utf8",
        timeout: 60_000,
        env: { ...process.env, SEED_DATABASE: join(dir, "seed.db") }
      }).trim().split("\n").filter((line) => !line.includes("pod localhost:1 removed"))
    try {
      const first = run()
      expect(first[0]).toContain("getTotalAmountActivity(order-1)")
      expect(first[1]).toContain("chargeCreditCardActivity(my-card, 100)")
      expect(first[2]).toContain("createShippingTrackingCodeActivity(My address)")
      expect(first[3]).toBe("tracking code: 1")
      expect(first.length).toBe(4)
      expect(run()).toEqual(["tracking code: 1"])
    } finally {
      rmSync(file, { force: true })
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
