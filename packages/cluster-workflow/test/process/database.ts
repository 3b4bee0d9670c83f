/**
 * The database of a real-process test, seen from the parent: a fresh SQLite file or a fresh table prefix on
 * PostgreSQL, with the journal's tables and the side table created before any child runs, read through the
 * parent's own journal and client. Removed (file deleted, tables dropped) when the scope closes.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Effect, Layer } from "effect"
import type * as Scope from "effect/Scope"
import { join } from "node:path"
import type { ExecutionKey, Journal } from "../../src/DurableExecutionJournal.js"
import { DurableExecutionJournal } from "../../src/DurableExecutionJournal.js"
import * as DurableExecutionJournalSql from "../../src/DurableExecutionJournalSql.js"
import * as Sqlite from "../../src/node/Sqlite.js"
import { databaseUrl, dropTables, pgClientLayer, tempDir, uniquePrefix } from "../utils/journals.js"
import { type ActivityId, createSideTable, readSideTable, type SideRow, sideTable } from "./chain.js"
import type { ChildConfig } from "./child.js"

export interface Database {
  readonly dialect: ChildConfig["dialect"]
  /** SQLite: the file; PostgreSQL: the URL. */
  readonly location: string
  readonly prefix: string
  readonly journal: Journal
  readonly sql: SqlClient.SqlClient
  readonly sideRows: Effect.Effect<ReadonlyArray<SideRow>>
}

const open = (
  dialect: Database["dialect"],
  location: string,
  prefix: string,
  layer: Layer.Layer<DurableExecutionJournal | SqlClient.SqlClient>
): Effect.Effect<Database, never, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layer)
    yield* Effect.orDie(Effect.provide(createSideTable(prefix), context))
    return {
      dialect,
      location,
      prefix,
      journal: Context.get(context, DurableExecutionJournal),
      sql: Context.get(context, SqlClient.SqlClient),
      sideRows: Effect.orDie(Effect.provide(readSideTable(prefix), context))
    }
  })

/** A new SQLite file in a temporary directory. */
export const sqliteDatabase = (tag: string): Effect.Effect<Database, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const filename = join(dir, `${tag}.db`)
    const prefix = uniquePrefix(tag)
    return yield* open("sqlite", filename, prefix, Layer.orDie(Sqlite.layer({ filename, prefix })))
  })

/** A new table prefix on PostgreSQL (`DATABASE_URL`). */
export const postgresDatabase = (tag: string): Effect.Effect<Database, never, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = uniquePrefix(tag)
    const client = pgClientLayer({ maxConnections: 2 })
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* dropTables(prefix)
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`DROP TABLE IF EXISTS ${sideTable(prefix)}`)
      }).pipe(Effect.provide(client), Effect.ignore)
    )
    return yield* open(
      "postgres",
      databaseUrl,
      prefix,
      Layer.orDie(Layer.provideMerge(DurableExecutionJournalSql.layer({ prefix }), client))
    )
  })

export const chainKey = (chainId: string): ExecutionKey => ({ workflow: "Chain", executionId: chainId })

/** An execution's activity steps, as its journal events record them. */
export interface JournalState {
  readonly started: ReadonlySet<ActivityId>
  readonly recorded: ReadonlySet<ActivityId>
  /** StepCompleted events per activity. */
  readonly completions: ReadonlyMap<string, number>
  /** Whether the event sequences are 0, 1, 2, ... */
  readonly contiguous: boolean
}

export const journalState = (db: Database, chainId: string): Effect.Effect<JournalState> =>
  Effect.map(Effect.orDie(db.journal.events(chainKey(chainId), 0)), (events) => {
    const started = new Set<ActivityId>()
    const recorded = new Set<ActivityId>()
    const completions = new Map<string, number>()
    for (const event of events) {
      if (event.stepKind !== "activity") continue
      if (event.kind === "StepStarted") started.add(event.stepId as ActivityId)
      if (event.kind === "StepCompleted") {
        recorded.add(event.stepId as ActivityId)
        completions.set(event.stepId, (completions.get(event.stepId) ?? 0) + 1)
      }
    }
    return { started, recorded, completions, contiguous: events.every((event, i) => event.sequence === i) }
  })
