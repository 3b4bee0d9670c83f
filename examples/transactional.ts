// Transactional activities (docs/activities.md). The journal is a SQLite database (here in memory) and the
// activity writes to the same database through the journal's `SqlClient`: `Activity.transactional` runs
// the body and records its result in ONE transaction, so the ledger row and the recorded result commit
// together or not at all. A crash before the commit leaves neither; the next attempt writes both.
// Run it with `pnpm exec tsx --conditions=source examples/transactional.ts`.
import { Message } from "@effect-cluster/cluster"
import { Activity, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import { SqlClient } from "@effect/sql"
import { Console, Effect, Schema } from "effect"

class Deposit extends Message.TaggedMessage<Deposit>()(
  "Deposit",
  Schema.String,
  Schema.Number,
  { depositId: Schema.String, amount: Schema.Number },
  (_) => _.depositId
) {}

const credit = (deposit: Deposit) =>
  Activity.make("credit", Schema.Number, Schema.String)(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const key = yield* Activity.idempotencyKey
      yield* Effect.orDie(sql`INSERT INTO ledger (entry, amount) VALUES (${key}, ${deposit.amount})`)
      // a typed failure is a result too: it commits together with the body's writes
      if (deposit.amount <= 0) return yield* Effect.fail("amount must be positive")
      const [row] = yield* Effect.orDie(sql<{ total: number }>`SELECT SUM(amount) AS total FROM ledger`)
      return Number(row!.total)
    })
  ).pipe(Activity.transactional)

const deposit = Workflow.make(Deposit, (d) => credit(d))

const main = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE ledger (entry TEXT PRIMARY KEY, amount INTEGER NOT NULL)`
  const engine = yield* WorkflowEngine.makeScoped(deposit)

  const d1 = new Deposit({ depositId: "d1", amount: 30 })
  yield* Console.log(`d1: balance ${yield* engine.send(d1)}`)
  yield* Console.log(`d1 sent again: balance ${yield* engine.send(d1)}`)
  const failed = yield* Effect.flip(engine.send(new Deposit({ depositId: "d2", amount: -5 })))
  yield* Console.log(`d2: failed: ${failed}`)
  const rows = yield* sql<{ entry: string; amount: number }>`SELECT entry, amount FROM ledger ORDER BY entry`
  for (const row of rows) yield* Console.log(`ledger: ${row.entry} ${row.amount}`)
}).pipe(Effect.scoped, Effect.provide(Sqlite.layer({ filename: ":memory:", prefix: "bank" })))

Effect.runPromise(main)
