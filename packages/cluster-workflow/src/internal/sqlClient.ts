/**
 * `@effect/sql`'s `SqlClient` service without importing `@effect/sql` at run time.
 *
 * A Context tag is identified by its key, so this tag IS `SqlClient.SqlClient` (both are
 * `GenericTag("@effect/sql/SqlClient")`): a layer from `@effect/sql-pg` or `@effect/sql-libsql` provides it.
 * The root entry reaches the SQL journal (`DurableExecutionJournal.layer({ table })`), and a static import of
 * `@effect/sql` there would make every user load it, including users of the in-memory journal; with this
 * tag only the types refer to `@effect/sql`.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"

/** @internal */
export const SqlClientTag: Context.Tag<SqlClient.SqlClient, SqlClient.SqlClient> = Context.GenericTag<
  SqlClient.SqlClient
>("@effect/sql/SqlClient")
