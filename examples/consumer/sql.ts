// The SQL journals as a user installs them (README "Install": `npm i @effect/sql-libsql@0.42`,
// `npm i @effect/sql-pg@0.53`), run on the PUBLISHED packages by examples/test/consumer.test.ts:
//
//   node sql.js sqlite <file>     the `/sqlite` subpath (a SQLite file through @effect/sql-libsql)
//   node sql.js postgres <url>    the 2024 `DurableExecutionJournal.layer({ table })` on `PgClient.layer`
//
// Prints `result: 20`. The PostgreSQL run uses table names of its own and drops them at the end.
import { Message } from "@effect-cluster/cluster"
import { Activity, DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema } from "effect"

class Ping extends Message.TaggedMessage<Ping>()("Ping", Schema.String, Schema.Number, { id: Schema.String, n: Schema.Number }, (_) => _.id) {}

const double = (n: number) => Activity.make(`double-${n}`, Schema.Number, Schema.String)(Effect.succeed(n * 2))

const pingWorkflow = Workflow.make(Ping, (message) => Effect.flatMap(double(message.n), double))

const program = Effect.gen(function* () {
  const engine = yield* WorkflowEngine.makeScoped(pingWorkflow)
  return yield* engine.send(new Ping({ id: "ping-1", n: 5 }))
})

const [kind, target = ""] = process.argv.slice(2)
const table = `consumer_${process.pid}_${Date.now().toString(36)}`

const dropOwnTables = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables WHERE table_name LIKE ${`${table}%`}`
  for (const { name } of rows) yield* sql`DROP TABLE IF EXISTS ${sql(name)}`
})

const journal = kind === "sqlite"
  ? Sqlite.layer({ filename: target })
  : DurableExecutionJournal.layer({ table }).pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(target) })))

const main = program.pipe(Effect.ensuring(kind === "sqlite" ? Effect.void : Effect.ignore(dropOwnTables)))

Effect.runPromise(main.pipe(Effect.provide(journal), Effect.scoped)).then(
  (result) => console.log(`result: ${result}`),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
