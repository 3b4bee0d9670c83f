/**
 * Restart after SIGKILL (issue 9 #4): `pnpm exec tsx --conditions=source bench/restart.ts`, also part of
 * `pnpm bench`. Prints a markdown table.
 *
 * Real processes with the default engine options, on SQLite and PostgreSQL (`DATABASE_URL`, default
 * postgres://postgres@127.0.0.1:5432/test): a process is killed with SIGKILL inside an activity and another
 * is started at once; nobody sends or awaits the execution (see
 * packages/cluster-workflow/test/process/restart.ts). The figure is the time from the SIGKILL to the
 * resumed execution's next step (the activity's next attempt), the new process's Node start-up included,
 * and, beside it, from the new process's engine start. The target: under 2 s on PostgreSQL.
 * `RESTART_ROUNDS` (default 3) kills per database.
 */
import * as DurableExecutionJournalSql from "@effect-cluster/cluster-workflow/DurableExecutionJournalSql"
import { DurableExecutionJournal } from "@effect-cluster/cluster-workflow/DurableExecutionJournal"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Effect, Layer, Redacted } from "effect"
import type * as Scope from "effect/Scope"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { removeChildren } from "../packages/cluster-workflow/test/process/children.js"
import { killAndRestart, type Restart, type RestartTarget } from "../packages/cluster-workflow/test/process/restart.js"

const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const rounds = Number(process.env.RESTART_ROUNDS ?? 3)
let counter = 0
const uniquePrefix = () => `bench_restart_${process.pid.toString(36)}_${Date.now().toString(36)}_${counter++}`

/** A journal on `layer`, its tables created, as a restart target. */
const targetOn = (
  dialect: RestartTarget["dialect"],
  location: string,
  prefix: string,
  layer: Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient, unknown>
) =>
  Effect.map(Layer.build(Layer.orDie(layer)), (context): RestartTarget => ({
    dialect,
    location,
    prefix,
    get: Context.get(context, DurableExecutionJournal).get
  }))

const sqliteTarget = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "wf-bench-restart-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const filename = join(dir, "restart.db")
  const prefix = uniquePrefix()
  return yield* targetOn("sqlite", filename, prefix, Sqlite.layer({ filename, prefix }))
})

const postgresTarget = Effect.gen(function*() {
  const prefix = uniquePrefix()
  const client = PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: 2, connectTimeout: "3 seconds" })
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* DurableExecutionJournalSql.tableNames(prefix)
      for (const table of [t.events, t.signals, t.executions, t.engines, t.migrations]) {
        yield* sql`DROP TABLE IF EXISTS ${sql(table)}`
      }
    }).pipe(Effect.provide(client), Effect.ignore)
  )
  return yield* targetOn(
    "postgres",
    databaseUrl,
    prefix,
    Layer.provideMerge(DurableExecutionJournalSql.layer({ prefix }), client)
  )
})

/** One kill and restart on a fresh database; dies unless the execution resumed before the dead claim's end. */
const once = (target: Effect.Effect<RestartTarget, never, Scope.Scope>) =>
  Effect.scoped(Effect.gen(function*() {
    const restart = yield* killAndRestart(yield* target)
    if (restart.attempt !== 1 || restart.resumedAt >= restart.deadClaim.claimUntil) {
      return yield* Effect.dieMessage(`resumed by the claim's end, not by liveness: ${JSON.stringify(restart)}`)
    }
    return restart
  }))

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const row = (name: string, runs: ReadonlyArray<Restart>) => {
  const range = (pick: (restart: Restart) => number) => {
    const values = runs.map(pick)
    return `${median(values).toFixed(0)} (${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)})`
  }
  const claimLeft = Math.min(...runs.map((r) => r.deadClaim.claimUntil - r.resumedAt)) / 1000
  return `| ${name} | ${runs.length} | ${range((r) => r.killToResumeMillis)} | ${range((r) => r.bootMillis)} | ` +
    `${range((r) => r.journalOpenMillis)} | ${range((r) => r.engineToResumeMillis)} | ${claimLeft.toFixed(1)} s |`
}

const postgresReachable = Layer.build(PgClient.layer({ url: Redacted.make(databaseUrl), connectTimeout: "3 seconds" }))
  .pipe(Effect.scoped, Effect.timeout("5 seconds"), Effect.isSuccess)

const program = Effect.gen(function*() {
  const lines = [
    "| database | kills | SIGKILL -> resumed step, ms | of which Node start-up | journal open | " +
    "engine start -> step | dead claim left (least) |",
    "|---|---|---|---|---|---|---|"
  ]
  const sqlite = yield* Effect.forEach(Array.from({ length: rounds }), () => once(sqliteTarget))
  lines.push(row("SQLite", sqlite))
  if (yield* postgresReachable) {
    const postgres = yield* Effect.forEach(Array.from({ length: rounds }), () => once(postgresTarget))
    lines.push(row("PostgreSQL", postgres))
  } else {
    lines.push(`| PostgreSQL | 0 | unreachable at ${new URL(databaseUrl).host} | | | | |`)
  }
  console.log(lines.join("\n"))
  console.log(
    "\nms: median (min-max). Node start-up: from the SIGKILL to the new process's modules loaded (the children " +
      "are transpiled once, then run with plain node). Dead claim left: how long the killed engine's claim " +
      "(30 s lease) still had to run when the execution resumed, by liveness."
  )
})

Effect.runPromise(program).then(
  () => removeChildren(),
  (error) => {
    removeChildren()
    console.error(error)
    process.exit(1)
  }
)
