/**
 * DurableExecutionEvent and the 2024 journal methods, as a 2024 program uses them (through the
 * `DurableExecutionEvent`, `DurableExecutionJournal` and `DurableExecutionJournalInMemory` subpaths): the
 * 2024 journal test on a SQLite file and on PostgreSQL (the table named `table`, a row per append, read back),
 * an existing 2024 table, and what 2024 left out (`fromSequence` in memory, `keepReading`).
 */
import * as DurableExecutionEvent from "@effect-cluster/cluster-workflow/DurableExecutionEvent"
import * as DurableExecutionJournal from "@effect-cluster/cluster-workflow/DurableExecutionJournal"
import * as DurableExecutionJournalInMemory from "@effect-cluster/cluster-workflow/DurableExecutionJournalInMemory"
import * as Activity from "@effect-cluster/cluster-workflow/Activity"
import * as Workflow from "@effect-cluster/cluster-workflow/Workflow"
import * as WorkflowEngine from "@effect-cluster/cluster-workflow/WorkflowEngine"
import * as Message from "@effect-cluster/cluster/Message"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import {
  dropTables,
  pgClientLayer,
  postgresSkipReason,
  sqliteClientLayer,
  testJournalClock,
  uniquePrefix
} from "./utils/journals.js"

const success = Schema.Number
const failure = Schema.String

describe("DurableExecutionEvent", () => {
  it("constructors, schema and match keep the 2024 tags and encoding", () => {
    const events = [
      DurableExecutionEvent.Attempted("v1")(0),
      DurableExecutionEvent.Forked("wf__a")(1),
      DurableExecutionEvent.Joined("wf__a")(2),
      DurableExecutionEvent.KillRequested(3),
      DurableExecutionEvent.Completed(Exit.succeed(42))(4),
      DurableExecutionEvent.Completed(Exit.fail("no"))(5)
    ]
    const codec = DurableExecutionEvent.schema(success, failure)
    const encoded = events.map((event) => Schema.encodeSync(codec)(event))
    expect(encoded).toEqual([
      { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Attempted", sequence: 0, version: "v1" },
      { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Forked", sequence: 1, persistenceId: "wf__a" },
      { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Joined", sequence: 2, persistenceId: "wf__a" },
      { _tag: "@effect/cluster-workflow/DurableExecutionEvent/InterruptionRequested", sequence: 3 },
      { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Completed", sequence: 4, exit: { _tag: "Success", value: 42 } },
      {
        _tag: "@effect/cluster-workflow/DurableExecutionEvent/Completed",
        sequence: 5,
        exit: { _tag: "Failure", cause: { _tag: "Fail", error: "no" } }
      }
    ])
    expect(encoded.map((e) => Schema.decodeUnknownSync(codec)(e))).toEqual(events)
    const describe = (event: DurableExecutionEvent.DurableExecutionEvent<number, string>) =>
      DurableExecutionEvent.match(event, {
        onAttempted: (e) => `attempted ${e.version}`,
        onInterruptionRequested: () => "interrupt",
        onCompleted: (e) => Exit.isSuccess(e.exit) ? `completed ${e.exit.value}` : "failed",
        onForked: (e) => `forked ${e.persistenceId}`,
        onJoined: (e) => `joined ${e.persistenceId}`
      })
    expect(events.map(describe)).toEqual([
      "attempted v1",
      "forked wf__a",
      "joined wf__a",
      "interrupt",
      "completed 42",
      "failed"
    ])
  })
})

const readAll = (journal: DurableExecutionJournal.Journal, id: string, from = 0) =>
  Effect.map(Stream.runCollect(journal.read(id, success, failure, from, false)), Chunk.toReadonlyArray)

// The 2024 journal behaviour every implementation shares.
const journalContract = (journalLayer: Layer.Layer<DurableExecutionJournal.DurableExecutionJournal, unknown>) => {
  const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, Layer.orDie(journalLayer))

  it.scoped("append then read returns the events in order, from fromSequence", () =>
    provide(Effect.gen(function*() {
      const journal = yield* DurableExecutionJournal.DurableExecutionJournal
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Attempted("")(0))
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Forked("wf__a")(1))
      yield* journal.append("wf__a", success, failure, DurableExecutionEvent.Attempted("")(1))
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Completed(Exit.succeed(7))(2))
      expect(yield* readAll(journal, "wf")).toEqual([
        DurableExecutionEvent.Attempted("")(0),
        DurableExecutionEvent.Forked("wf__a")(1),
        DurableExecutionEvent.Completed(Exit.succeed(7))(2)
      ])
      expect(yield* readAll(journal, "wf", 1)).toEqual([
        DurableExecutionEvent.Forked("wf__a")(1),
        DurableExecutionEvent.Completed(Exit.succeed(7))(2)
      ])
      expect(yield* readAll(journal, "wf__a")).toEqual([DurableExecutionEvent.Attempted("")(1)])
      expect(yield* readAll(journal, "unknown")).toEqual([])
    })))

  it.scoped("appending the same event again is a no-op; another event at a taken sequence is a defect", () =>
    provide(Effect.gen(function*() {
      const journal = yield* DurableExecutionJournal.DurableExecutionJournal
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Attempted("")(0))
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Attempted("")(0))
      const exit = yield* Effect.exit(journal.append("wf", success, failure, DurableExecutionEvent.KillRequested(0)))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      expect(defect).toBeInstanceOf(DurableExecutionJournal.JournalError)
      expect(yield* readAll(journal, "wf")).toEqual([DurableExecutionEvent.Attempted("")(0)])
    })))

  it.scoped("read with keepReading goes on with the events appended later", () =>
    provide(Effect.gen(function*() {
      const journal = yield* DurableExecutionJournal.DurableExecutionJournal
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Attempted("")(0))
      const reader = yield* Effect.fork(
        Stream.runCollect(Stream.take(journal.read("wf", success, failure, 0, true), 3))
      )
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Forked("wf__a")(1))
      yield* journal.append("wf", success, failure, DurableExecutionEvent.Joined("wf__a")(2))
      expect(Chunk.toReadonlyArray(yield* Fiber.join(reader))).toEqual([
        DurableExecutionEvent.Attempted("")(0),
        DurableExecutionEvent.Forked("wf__a")(1),
        DurableExecutionEvent.Joined("wf__a")(2)
      ])
    })))
}

describe("DurableExecutionJournalInMemory (2024 methods)", () => {
  journalContract(DurableExecutionJournalInMemory.activityJournalInMemory)
})

class Charge extends Message.TaggedMessage<Charge>()("Charge", Schema.Never, Schema.Number, { id: Schema.String }, (_) => _.id) {}

const sqlCases = [
  { name: "sqlite", client: sqliteClientLayer(), skip: undefined },
  { name: "postgres", client: pgClientLayer(), skip: postgresSkipReason }
] as const

for (const db of sqlCases) {
  describe.skipIf(db.skip !== undefined)(`DurableExecutionJournal.layer({ table }) [${db.name}]`, () => {
    const table = uniquePrefix("legacy")
    // A fresh table name per build; the 2024 table and the engine's tables are dropped afterwards.
    const fresh = (name: string) =>
      Layer.unwrapScoped(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Effect.addFinalizer(() =>
          Effect.ignore(Effect.zipRight(dropTables(name), sql`DROP TABLE IF EXISTS ${sql(name)}`))
        )
        return DurableExecutionJournal.layer({ table: name, clock: yield* testJournalClock })
      }))
    let n = 0
    const journalLayer = Layer.suspend(() => Layer.provideMerge(fresh(`${table}_${n++}`), Layer.orDie(db.client)))
    journalContract(journalLayer)

    const columns = (name: string) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.onDialectOrElse({
          pg: () =>
            Effect.map(
              sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
                WHERE table_name = ${name} ORDER BY ordinal_position`,
              (rows) => rows.map((row) => row.column_name)
            ),
          orElse: () =>
            Effect.map(
              sql<{ name: string }>`SELECT name FROM pragma_table_info(${name}) ORDER BY cid`,
              (rows) => rows.map((row) => row.name)
            )
        }))

    it.scoped("creates the 2024 table under that exact name, the engine's tables beside it, and stores a row per append", () => {
      // the 2024 options type, as a 2024 program names it
      const options: DurableExecutionJournal.DurableExecutionJournal.MakeOptions = { table: `${table}_x` }
      const name = options.table
      return Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        expect(typeof DurableExecutionJournal.DurableExecutionJournalTypeId).toBe("symbol")
        expect(yield* columns(name)).toEqual(["execution_id", "sequence", "event_json"])
        expect((yield* columns(`${name}_executions`)).length).toBeGreaterThan(0)
        const journal = yield* DurableExecutionJournal.DurableExecutionJournal
        yield* journal.append("wf", success, failure, DurableExecutionEvent.Attempted("")(0))
        const rows = yield* sql<{ execution_id: string; sequence: number; event_json: string }>`
          SELECT execution_id, sequence, event_json FROM ${sql(name)}`
        expect(rows.map((row) => ({ ...row, sequence: Number(row.sequence), event_json: JSON.parse(row.event_json) })))
          .toEqual([{
            execution_id: "wf",
            sequence: 0,
            event_json: { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Attempted", sequence: 0, version: "" }
          }])
        expect(yield* readAll(journal, "wf")).toEqual([DurableExecutionEvent.Attempted("")(0)])
        // the engine runs on the same journal, in its own tables
        class Pay extends Charge {}
        const workflow = Workflow.make(Pay, () => Activity.make("charge", Schema.Number, Schema.Never)(Effect.succeed(5)))
        const engine = yield* WorkflowEngine.makeScoped(workflow)
        expect(yield* engine.send(new Pay({ id: "p1" }))).toBe(5)
        expect(yield* readAll(journal, "wf")).toEqual([DurableExecutionEvent.Attempted("")(0)])
      }).pipe(Effect.provide(Layer.provideMerge(fresh(name), Layer.orDie(db.client))))
    })

    it.scoped("reads an existing 2024 journal table as it is", () => {
      const name = `${table}_old`
      return Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Effect.addFinalizer(() => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(name)}`))
        // the 2024 DDL and rows, as the 2024 package wrote them
        yield* sql.onDialectOrElse({
          pg: () =>
            sql`CREATE TABLE ${sql(name)} (execution_id VARCHAR(255) NOT NULL, sequence INT DEFAULT 0,
              event_json TEXT NOT NULL, CONSTRAINT ${sql(`${name}_pkey`)} PRIMARY KEY (execution_id, sequence))`,
          orElse: () =>
            sql`CREATE TABLE ${sql(name)} (execution_id VARCHAR(255) NOT NULL, sequence INT DEFAULT 0,
              event_json CLOB NOT NULL, CONSTRAINT ${sql(`${name}_pkey`)} PRIMARY KEY (execution_id, sequence))`
        })
        const old = [
          { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Attempted", sequence: 0, version: "" },
          { _tag: "@effect/cluster-workflow/DurableExecutionEvent/Completed", sequence: 1, exit: { _tag: "Success", value: 3 } }
        ]
        for (const event of old) {
          yield* sql`INSERT INTO ${sql(name)} (execution_id, sequence, event_json)
            VALUES ('old-wf', ${event.sequence}, ${JSON.stringify(event)})`
        }
        const events = yield* Effect.flatMap(
          DurableExecutionJournal.make({ table: name, clock: "test" }),
          (journal) => readAll(journal, "old-wf")
        ).pipe(Effect.ensuring(Effect.ignore(dropTables(name))))
        expect(events).toEqual([
          DurableExecutionEvent.Attempted("")(0),
          DurableExecutionEvent.Completed(Exit.succeed(3))(1)
        ])
      }).pipe(Effect.provide(Layer.orDie(db.client)))
    })

    it.live("keepReading sees the events another journal (process) appends", () => {
      const name = `${table}_tail`
      return Effect.gen(function*() {
        const reader = yield* DurableExecutionJournal.make({ table: name })
        const writer = yield* DurableExecutionJournal.make({ table: name })
        const tail = yield* Effect.fork(Stream.runCollect(Stream.take(reader.read("t", success, failure, 0, true), 2)))
        yield* writer.append("t", success, failure, DurableExecutionEvent.Attempted("")(0))
        yield* writer.append("t", success, failure, DurableExecutionEvent.KillRequested(1))
        expect(Chunk.toReadonlyArray(yield* Fiber.join(tail))).toEqual([
          DurableExecutionEvent.Attempted("")(0),
          DurableExecutionEvent.KillRequested(1)
        ])
      }).pipe(
        Effect.ensuring(
          Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) =>
            Effect.zipRight(dropTables(name), sql`DROP TABLE IF EXISTS ${sql(name)}`)))
        ),
        Effect.scoped,
        Effect.provide(Layer.orDie(db.client))
      )
    })
  })
}
