/**
 * The SQL journal reaches `@effect/sql`'s `SqlClient` through a tag of the same key (internal/sqlClient), so
 * the root entry does not import `@effect/sql` at run time. That tag must BE `SqlClient.SqlClient`: a client
 * provided by a driver layer is found through it, and the SQL journal builds on that layer.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as DurableExecutionJournal from "../src/DurableExecutionJournal.js"
import { SqlClientTag } from "../src/internal/sqlClient.js"
import * as Sqlite from "../src/node/Sqlite.js"

describe("SqlClientTag", () => {
  it("has the key of @effect/sql's SqlClient tag (a Context looks services up by key)", () => {
    expect(SqlClientTag.key).toBe(SqlClient.SqlClient.key)
  })

  it.effect("finds the client a driver layer provides, and the 2024 journal layer builds on it", () =>
    Effect.gen(function*() {
      const ours = yield* SqlClientTag
      const theirs = yield* SqlClient.SqlClient
      expect(ours).toBe(theirs)
      // The journal created its tables through the client: a lookup runs a real query.
      const journal = yield* DurableExecutionJournal.DurableExecutionJournal
      const row = yield* journal.get({ workflow: "w", executionId: "e" })
      expect(Option.isNone(row)).toBe(true)
    }).pipe(
      Effect.provide(DurableExecutionJournal.layer({ table: "sql_client_tag", clock: "test" })),
      Effect.provide(Sqlite.layerClient({ filename: ":memory:" }))
    ))
})
