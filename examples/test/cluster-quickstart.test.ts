/**
 * The quick start of docs/cluster.md: runs it as a user would and checks that the page shows its code.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

describe("examples/cluster-quickstart.ts (docs/cluster.md)", () => {
  it("sends, deduplicates a retry, broadcasts to both pods and starts the singleton on one", () => {
    const output = execFileSync(process.execPath, ["--conditions=source", "--import", "tsx", "examples/cluster-quickstart.ts"], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000
    })
    const lines = output.trim().split("\n").filter((line) => !line.includes("level="))
    expect(lines.slice(0, 3)).toEqual([
      "counter-a: 2",
      "counter-a, request-2 again: 2",
      "broadcast answered by: pod-1, pod-2"
    ])
    expect(lines[3]).toMatch(/^singleton started on: pod-[12]$/)
    expect(lines.length).toBe(4)
  })

  it("is the code block of docs/cluster.md", () => {
    const source = readFileSync(`${root}/examples/cluster-quickstart.ts`, "utf8")
    const code = source.slice(
      source.indexOf("// --- quick start\n") + "// --- quick start\n".length,
      source.indexOf("// --- end of quick start")
    )
    const page = readFileSync(`${root}/docs/cluster.md`, "utf8")
    expect(page).toContain("```ts\n" + code + "```")
  })
})
