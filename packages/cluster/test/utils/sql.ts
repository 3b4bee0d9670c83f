/**
 * SQL databases for the cluster's SQL tests: a SQLite file in a temporary directory and PostgreSQL
 * (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test), with table names no other test uses.
 *
 * PostgreSQL cases are skipped, with a line saying so, only when the server is unreachable and
 * `REQUIRE_POSTGRES` is unset (same convention as packages/cluster-workflow/test/utils/journals.ts).
 */
import * as LibsqlClient from "@effect/sql-libsql/LibsqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** The PostgreSQL server the tests use. */
export const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"

const requirePostgres = process.env.REQUIRE_POSTGRES !== undefined && process.env.REQUIRE_POSTGRES !== ""

let counter = 0
/** A table name no other test (file, process or run) uses. */
export const uniqueTable = (tag = "t"): string =>
  `clt_${tag}_${process.pid.toString(36)}_${Date.now().toString(36)}_${(counter++).toString(36)}_${
    Math.floor(Math.random() * 36 ** 4).toString(36)
  }`

/** A PostgreSQL client on `DATABASE_URL`. */
export const pgClientLayer: Layer.Layer<SqlClient.SqlClient, SqlError> = PgClient.layer({
  url: Redacted.make(databaseUrl),
  // Its connect timeout runs on the Effect clock; reachability is checked once on the live clock below.
  connectTimeout: "20 days"
})

/** Why the PostgreSQL cases are skipped, or undefined when they run. */
export const postgresSkipReason: string | undefined = await Effect.runPromise(
  Layer.build(pgClientLayer).pipe(
    Effect.scoped,
    Effect.timeout("4 seconds"),
    Effect.match({ onFailure: (error) => String(error), onSuccess: () => undefined })
  )
).then((failure) => {
  if (failure === undefined) return undefined
  if (requirePostgres) {
    throw new Error(`REQUIRE_POSTGRES is set but PostgreSQL at ${databaseUrl} is unreachable: ${failure}`)
  }
  const reason = `PostgreSQL at ${databaseUrl} is unreachable (${failure}); set REQUIRE_POSTGRES=1 to fail instead`
  console.warn(`[sql] skipping the PostgreSQL cases: ${reason}`)
  return reason
})

/** The path of a file `name` in a new temporary directory, removed with the scope. */
export const tempFile = (name: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "cluster-sql-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    ),
    (dir) => join(dir, name)
  )

/** A SQLite client on a new file in a temporary directory (removed when the layer is released). */
export const sqliteClientLayer: Layer.Layer<SqlClient.SqlClient> = Layer.unwrapScoped(
  Effect.map(tempFile("test.db"), (file) => LibsqlClient.layer({ url: `file:${file}` }))
)

/** One database of the parameterised SQL suites. */
export interface SqlCase {
  readonly name: "sqlite" | "postgres"
  readonly client: Layer.Layer<SqlClient.SqlClient, SqlError>
  /** Why the case is skipped, or undefined. */
  readonly skip: string | undefined
}

/** SQLite and PostgreSQL. */
export const sqlCases: ReadonlyArray<SqlCase> = [
  { name: "sqlite", client: sqliteClientLayer, skip: undefined },
  { name: "postgres", client: pgClientLayer, skip: postgresSkipReason }
]

/** Drops a table when the scope closes (PostgreSQL tables outlive the test otherwise). */
export const dropTableOnClose = (table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.addFinalizer(() => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(table)}`)))

/** The column names of a table, in order. */
export const columnsOf = (table: string): Effect.Effect<ReadonlyArray<string>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.onDialectOrElse({
      pg: () =>
        Effect.map(
          sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
            WHERE table_name = ${table} ORDER BY ordinal_position`,
          (rows) => rows.map((row) => row.column_name)
        ),
      orElse: () =>
        Effect.map(
          sql<{ name: string }>`SELECT name FROM pragma_table_info(${table}) ORDER BY cid`,
          (rows) => rows.map((row) => row.name)
        )
    }))
