/**
 * What bench/clusterWorkflows.ts and its pod processes (bench/clusterWorkflowsPod.ts) share: the workflow
 * (the seed's shape: three activities built inside the body on every call) and the journal layer for a
 * dialect (a SQLite file or PostgreSQL, with a table prefix).
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, DurableExecutionJournalSql, Workflow } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Layer, Redacted, Schema } from "effect"

/** The benchmark's message: one payment. */
export class BenchPayment extends Message.TaggedMessage<BenchPayment>()(
  "BenchPayment",
  Schema.String,
  Schema.Number,
  { orderId: Schema.String, amount: Schema.Number },
  (_) => _.orderId
) {}

/** Three activities, built inside the body on every call, as the seed program does. */
export const benchWorkflow = Workflow.make(BenchPayment, (payment) =>
  Effect.gen(function*() {
    const amount = yield* Activity.make("get-amount", Schema.Number, Schema.String)(Effect.succeed(payment.amount))
    yield* Activity.make("charge", Schema.Void, Schema.String)(Effect.void)
    return yield* Activity.make("ship", Schema.Number, Schema.String)(Effect.succeed(amount * 10))
  }))

/** Where a journal lives. */
export interface JournalSpec {
  readonly dialect: "sqlite" | "postgres"
  /** The SQLite file, or the PostgreSQL URL. */
  readonly location: string
  readonly prefix: string
}

/** The SQL journal (and its `SqlClient`) of a spec. Several processes share a SQLite file: retry when busy. */
export const journalLayer = (spec: JournalSpec) =>
  spec.dialect === "sqlite"
    ? Sqlite.layer({ filename: spec.location, prefix: spec.prefix, busyRetries: 40 })
    : DurableExecutionJournalSql.layer({ prefix: spec.prefix }).pipe(
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(spec.location), maxConnections: 10 }))
    )
