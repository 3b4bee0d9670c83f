/**
 * `pnpm bench:peers`, this project's side: one case (see bench/peers/common.ts) on this project's
 * in-process engine (in-memory, SQLite file or PostgreSQL journal), or the floor (single-row INSERTs
 * through the same `SqlClient`). Started by bench/peers/index.ts, one process per case.
 *
 * It sits outside bench/peers on purpose: a file under bench/peers resolves `effect` from the peers'
 * install, and this project's packages (their source, through `--conditions=source`) resolve it from the
 * workspace's; one process must load one copy of Effect.
 *
 * The workflow is the seed program's: activities built inside the body on every call, a message class
 * instance constructed per call, one `Effect.runPromise` per workflow (as an HTTP handler would).
 */
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  DurableExecutionJournalSql,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Effect, Layer, ManagedRuntime, Redacted, Schema } from "effect"
import { createRequire } from "node:module"
import {
  amountDue,
  type CaseResult,
  type CaseSpec,
  closedLoop,
  main,
  runTag,
  sleepers,
  trackingCode,
  wokeAt,
  type Workload
} from "./peers/common.js"

class ProcessPayment extends Message.TaggedMessage<ProcessPayment>()(
  "ProcessPayment",
  Schema.String,
  Schema.Number,
  { orderId: Schema.String, cardNumber: Schema.String, email: Schema.String, deliveryAddress: Schema.String },
  (_) => _.orderId
) {}

class Nap extends Message.TaggedMessage<Nap>()(
  "Nap",
  Schema.Never,
  Schema.Number,
  { id: Schema.String, wakeAt: Schema.Number },
  (_) => _.id
) {}

/** An activity body of the workload as an effect (the 20 ms of `io` on Effect's clock, as users write it). */
const body = <A>(workload: Workload, value: A): Effect.Effect<A> =>
  workload === "io" ? Effect.as(Effect.sleep("20 millis"), value) : Effect.succeed(value)

const paymentWorkflow = (workload: Workload) =>
  Workflow.make(ProcessPayment, (message) =>
    Effect.gen(function*() {
      const totalAmount = yield* Activity.make(`get-amount-due-${message.orderId}`, Schema.Number, Schema.String)(
        body(workload, amountDue)
      )
      yield* Activity.make(`charge-credit-card-${message.cardNumber}`, Schema.Void, Schema.String)(
        body(workload, void totalAmount)
      )
      return yield* Activity.make(
        `create-shipping-tracking-code-${message.deliveryAddress}`,
        Schema.Number,
        Schema.String
      )(body(workload, trackingCode))
    }))

const napWorkflow = Workflow.make(Nap, (nap) =>
  Effect.gen(function*() {
    const now = yield* Activity.make("now", Schema.Number, Schema.Never)(Effect.sync(() => Date.now()))
    yield* Workflow.sleep("nap", Math.max(0, nap.wakeAt - now))
    return yield* Activity.make("woke", Schema.Number, Schema.Never)(
      Effect.sync(() => {
        wokeAt.set(nap.id, Date.now())
        return 0
      })
    )
  }))

/**
 * Counts the statements this process sends to PostgreSQL (each one round trip: `pg` sends a statement and
 * its parameters in one exchange), by wrapping the `pg` client that `@effect/sql-pg` uses.
 */
const countStatements = (): () => number => {
  const require = createRequire(import.meta.url)
  const pg = require(require.resolve("pg", { paths: [require.resolve("@effect/sql-pg/PgClient")] })) as {
    Client: { prototype: { query: (...args: Array<unknown>) => unknown } }
  }
  const query = pg.Client.prototype.query
  let count = 0
  pg.Client.prototype.query = function(this: unknown, ...args: Array<unknown>) {
    count++
    return query.apply(this, args)
  }
  return () => count
}

const statements = process.env.BENCH_CASE?.includes("\"databaseUrl\"") ? countStatements() : undefined

const sqlClient = (spec: CaseSpec, maxConnections?: number): Layer.Layer<SqlClient.SqlClient, unknown> => {
  if (spec.sqliteFile !== undefined) return Sqlite.layerClient({ filename: spec.sqliteFile })
  if (spec.databaseUrl !== undefined) {
    return PgClient.layer({
      url: Redacted.make(spec.databaseUrl),
      ...(maxConnections === undefined ? {} : { maxConnections })
    })
  }
  throw new Error(`${spec.system}: no database given`)
}

const journal = (spec: CaseSpec): Layer.Layer<DurableExecutionJournal.DurableExecutionJournal, unknown> =>
  spec.system === "project-memory"
    ? DurableExecutionJournalInMemory.layer
    : Layer.provide(DurableExecutionJournalSql.layer({}), sqlClient(spec))

const runWorkflows = async (spec: CaseSpec): Promise<CaseResult> => {
  if (spec.workload === "sleepers") {
    const Engine = Context.GenericTag<WorkflowEngine.WorkflowEngine<Nap>>("bench/NapEngine")
    const runtime = ManagedRuntime.make(Layer.scoped(Engine, WorkflowEngine.makeScoped(napWorkflow)).pipe(
      Layer.provide(journal(spec))
    ))
    const engine = await runtime.runPromise(Engine)
    const result = await sleepers(spec, (id, wakeAt) => Effect.runPromise(engine.sendDiscard(new Nap({ id, wakeAt }))))
    await runtime.dispose()
    return result
  }
  const Engine = Context.GenericTag<WorkflowEngine.WorkflowEngine<ProcessPayment>>("bench/PaymentEngine")
  const runtime = ManagedRuntime.make(
    Layer.scoped(Engine, WorkflowEngine.makeScoped(paymentWorkflow(spec.workload))).pipe(Layer.provide(journal(spec)))
  )
  const engine = await runtime.runPromise(Engine)
  const result = await closedLoop(spec, async (i) => {
    const code = await Effect.runPromise(engine.send(
      new ProcessPayment({
        orderId: `order-${runTag}-${i}`,
        cardNumber: `card-${i}`,
        email: `customer-${i}@example.com`,
        deliveryAddress: `${i} Main Street`
      })
    ))
    if (code !== trackingCode) throw new Error(`wrong result ${code}`)
  }, statements)
  await runtime.dispose()
  return result
}

/** The floor: one single-row INSERT (autocommit) per call, through the same `SqlClient` as the journal. */
const runFloor = async (spec: CaseSpec): Promise<CaseResult> => {
  const runtime = ManagedRuntime.make(sqlClient(spec, spec.connections))
  const sql = await runtime.runPromise(SqlClient.SqlClient)
  await runtime.runPromise(sql`CREATE TABLE bench_floor (id TEXT PRIMARY KEY, body TEXT NOT NULL)`)
  const row = JSON.stringify({ _tag: "Success", value: amountDue })
  const result = await closedLoop(
    spec,
    (i) => runtime.runPromise(sql`INSERT INTO bench_floor (id, body) VALUES (${`${runTag}-${i}`}, ${row})`).then(() => {}),
    statements
  )
  await runtime.dispose()
  return result
}

main((spec) => spec.workload === "floor" ? runFloor(spec) : runWorkflows(spec))
