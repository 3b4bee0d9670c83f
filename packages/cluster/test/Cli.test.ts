/**
 * The `effect-cluster` bin as a real process (src/node/bin.ts): its help, its version, a manager on a
 * SQLite file configured from the environment (serving /health, stopping on SIGTERM), and the refusal of
 * an unsupported database URL without printing its password.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Cli from "@effect-cluster/cluster/node/Cli"
import { cleanUpChildren, spawnChild } from "./process/harness.js"

afterAll(() => cleanUpChildren())

const packageVersion = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const child = yield* spawnChild("effect-cluster", "src/node/bin.ts", args, env)
    const exit = yield* child.awaitExit(60_000)
    return { exit, output: `${child.output}\n${child.describe()}` }
  })

describe("effect-cluster bin", () => {
  it.scoped("manager --help names every option and its environment variable", () =>
    Effect.gen(function*() {
      const { exit, output } = yield* run(["manager", "--help"])
      expect(exit.code).toBe(0)
      for (
        const [option, env] of [
          ["--host", "CLUSTER_HOST"],
          ["--port", "API_PORT"],
          ["--database-url", "DATABASE_URL"],
          ["--table-prefix", "CLUSTER_TABLE_PREFIX"],
          ["--number-of-shards", "NUMBER_OF_SHARDS"],
          ["--lease-duration", "LEASE_DURATION"],
          ["--lease-margin", "LEASE_MARGIN"],
          ["--holder", "CLUSTER_MANAGER_ID"]
        ]
      ) {
        expect(output).toContain(option)
        expect(output).toContain(`env ${env}`)
      }
      expect(output).toContain("CLUSTER_SECRET")
      // Standby managers: how pods list them, and what a standby answers.
      expect(output).toContain("SHARD_MANAGER_URI")
      expect(output).toContain("ManagerNotActive")
    }))

  it.scoped("--version prints the package's version", () =>
    Effect.gen(function*() {
      const { exit, output } = yield* run(["--version"])
      expect(exit.code).toBe(0)
      expect(output).toContain(packageVersion)
      expect(Cli.version).toBe(packageVersion)
    }))

  it.scoped("a manager on a SQLite file, configured from the environment: /health answers, SIGTERM stops it", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "cluster-cli-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const child = yield* spawnChild("manager", "src/node/bin.ts", ["manager"], {
        API_PORT: "0",
        DATABASE_URL: join(dir, "cluster.db"),
        CLUSTER_TABLE_PREFIX: "cli"
      })
      const match = yield* child.waitFor(/listening on http:\/\/127\.0\.0\.1:(\d+) \(term 1\)/)
      const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${match[1]}/health`))
      expect(response.status).toBe(200)
      yield* child.signal("SIGTERM")
      const exit = yield* child.awaitExit()
      expect(exit.signal).toBeNull()
    }))

  it.scoped("an unsupported database URL is refused (exit 1) without printing its password", () =>
    Effect.gen(function*() {
      const { exit, output } = yield* run(["manager", "--port", "0", "--database-url", "mysql://user:hunter2@db/cluster"])
      expect(exit.code).toBe(1)
      expect(output).toContain("unsupported database URL scheme mysql://")
      expect(output).not.toContain("hunter2")
    }))

  it("reads database URLs: postgres, file: URLs and plain paths", () => {
    const pg = Cli.parseDatabaseUrl("postgres://u:p@h:5432/db")
    expect(Either.isRight(pg) && pg.right._tag === "Postgres" && Redacted.value(pg.right.url)).toBe("postgres://u:p@h:5432/db")
    expect(Cli.parseDatabaseUrl("postgresql://h/db").pipe(Either.map((d) => d._tag))).toEqual(Either.right("Postgres"))
    expect(Cli.parseDatabaseUrl("file:/tmp/c.db")).toEqual(Either.right({ _tag: "Sqlite", url: "file:/tmp/c.db" }))
    expect(Cli.parseDatabaseUrl("data/c.db")).toEqual(Either.right({ _tag: "Sqlite", url: "file:data/c.db" }))
    expect(Either.isLeft(Cli.parseDatabaseUrl(""))).toBe(true)
  })
})
