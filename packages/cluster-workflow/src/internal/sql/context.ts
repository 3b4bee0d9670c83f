/**
 * What every statement of the SQL journal needs: the client (without transforms), the dialect, the
 * table fragments, and the ways to run an operation (a retried transaction, a write, a read).
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import type { ExecutionKey, ExecutionRow } from "../journal.js"
import { JournalError } from "../journal.js"
import { inTransaction, withRetries } from "./retry.js"
import type { RecordSource, Row } from "./rows.js"
import { decodeExecution, keySource, rowKeyId, terminalStatuses } from "./rows.js"
import type { TableNames } from "./tables.js"
import type { JournalClock, TimeFrame } from "./time.js"
import { identityFrame, makeFrames } from "./time.js"

/** @internal */
export type Dialect = "pg" | "sqlite"

/** @internal */
export interface SqlContext {
  /** The client as given (a transactional activity runs on it). */
  readonly client: SqlClient.SqlClient
  /** The client without name transforms: the journal's statements name their columns themselves. */
  readonly sql: SqlClient.SqlClient
  readonly dialect: Dialect
  readonly tables: TableNames
  readonly retries: number
  readonly E: Statement.Identifier
  readonly V: Statement.Identifier
  readonly S: Statement.Identifier
  /** How this operation converts the caller's instants to the database's time (see time.ts). */
  readonly time: TimeFrame
  /** The execution columns, `claim_until` in the caller's clock (`time.cols`). */
  readonly cols: Statement.Fragment
  /** The same, qualified by the alias `x`. */
  readonly xcols: Statement.Fragment
  readonly terminal: Statement.Fragment
  readonly forUpdate: Statement.Fragment
  /** One transaction, retried as a whole while the database is busy. */
  readonly transaction: <A>(operation: string, effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, JournalError>
  /** One writing operation: a transaction on SQLite (see `make`), autocommit statements on PostgreSQL. */
  readonly operation: <A>(name: string, effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, JournalError>
  /**
   * One reading operation: a plain statement. (On SQLite it waits for the process's open transaction, and
   * in WAL mode it does not take the write lock, so it never makes another process's writer wait.)
   */
  readonly read: <A>(name: string, effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, JournalError>
  /** A batch of records as a derived table `v`, from ONE JSON parameter. */
  readonly source: <K extends string>(
    src: RecordSource<K>,
    rows: ReadonlyArray<Record<K, string | number | null>>
  ) => Statement.Fragment
  readonly limitOf: (limit: number) => Statement.Fragment
  readonly inWorkflows: (workflows: ReadonlyArray<string>) => Statement.Fragment
  readonly selectRows: (keys: ReadonlyArray<ExecutionKey>) => Effect.Effect<Map<string, ExecutionRow>, SqlError>
  readonly selectRow: (key: ExecutionKey) => Effect.Effect<ExecutionRow | undefined, SqlError>
  /**
   * This context in the time frame of the calling fiber's clock (on the journal's `clock`, see time.ts):
   * every operation that stores, compares or returns a claim's end runs on it.
   */
  readonly framed: Effect.Effect<SqlContext, JournalError>
}

/** The dialect of a client, or a (non-retryable) `JournalError` for any other database. */
export const dialectOf = (sql: SqlClient.SqlClient): Effect.Effect<Dialect, JournalError> => {
  const dialect = sql.onDialectOrElse({
    pg: () => "pg" as const,
    sqlite: () => "sqlite" as const,
    orElse: () => "other" as const
  })
  return dialect === "other"
    ? new JournalError({
      operation: "make",
      message: "The SQL journal supports SQLite (@effect/sql-libsql) and PostgreSQL (@effect/sql-pg)",
      retryable: false
    })
    : Effect.succeed(dialect)
}

/** @internal */
export const makeContext = (
  client: SqlClient.SqlClient,
  dialect: Dialect,
  tables: TableNames,
  retries: number,
  clock: JournalClock
): SqlContext => {
  const sql = client.withoutTransforms()
  const E = sql(tables.executions)
  const transaction = <A>(operation: string, effect: Effect.Effect<A, SqlError>) =>
    withRetries(retries, operation, inTransaction(sql.withTransaction, effect))
  const source = <K extends string>(
    src: RecordSource<K>,
    rows: ReadonlyArray<Record<K, string | number | null>>
  ): Statement.Fragment =>
    // PostgreSQL: the LIMIT (the rows' count, which it never cuts) tells the planner how many rows the
    // set has; without it the planner assumes 100 and joined a table of a few thousand rows by a
    // sequential scan and a hash rather than by its primary key.
    dialect === "pg"
      ? sql`(SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::json) AS r(${sql.literal(src.pg)}) LIMIT ${
        sql.literal(String(rows.length))
      }) AS v`
      : sql`(SELECT ${sql.literal(src.sqlite)} FROM json_each(${JSON.stringify(rows)})) AS v`
  const frame = makeFrames(sql, dialect, retries, clock)
  const inFrame = (time: TimeFrame): SqlContext => {
    const { cols, xcols } = time
    return {
      ...base,
      time,
      cols,
      xcols,
      selectRows: (keys) =>
        Effect.map(
          sql<Row>`SELECT ${xcols} FROM ${E} AS x JOIN ${
            source(keySource, keys.map((k) => ({ w: k.workflow, e: k.executionId })))
          } ON x.workflow = v.w AND x.execution_id = v.e`,
          (rows) => new Map(rows.map((r) => [rowKeyId(r), decodeExecution(r)]))
        ),
      selectRow: (key) =>
        Effect.map(
          sql<Row>`SELECT ${cols} FROM ${E} WHERE workflow = ${key.workflow} AND execution_id = ${key.executionId}`,
          (rows) => rows.length === 0 ? undefined : decodeExecution(rows[0]!)
        )
    }
  }
  const base: Omit<SqlContext, "time" | "cols" | "xcols" | "selectRows" | "selectRow"> = {
    client,
    sql,
    dialect,
    tables,
    retries,
    E,
    V: sql(tables.events),
    S: sql(tables.signals),
    terminal: sql.literal(terminalStatuses),
    forUpdate: sql.literal(dialect === "pg" ? " FOR UPDATE" : ""),
    transaction,
    operation: (name, effect) =>
      dialect === "sqlite" ? transaction(name, effect) : withRetries(retries, name, effect),
    read: (name, effect) => withRetries(retries, name, effect),
    source,
    limitOf: (limit) => sql.literal(String(Math.max(0, Math.floor(limit)))),
    inWorkflows: (workflows) => sql`workflow IN ${sql.in(workflows)}`,
    framed: Effect.map(frame, (time) => inFrame(time))
  }
  return inFrame(identityFrame(sql))
}
