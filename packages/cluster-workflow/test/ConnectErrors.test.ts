/**
 * issue 9 #20: a wrong database URL must fail with a `JournalError` that says why (the driver alone says
 * only `PgClient: Failed to connect`), and never prints the URL's password. Runs against the real
 * PostgreSQL server for the unknown database and the unknown role.
 *
 * Two ways to build the client: `layerOn(PgClient.layer(...))` (the client layer connects while it is
 * built: `layerOn` maps its failure), and the plain journal layer on a client of the user's own that
 * connects at its first use (`PgClient.layerFromPool` over the user's `pg` pool): the journal's first
 * statement maps the failure. (A bare `PgClient.layer` provided to the plain journal layer fails in its own
 * build, before the journal has the client: see docs/sql-schema.md.)
 */
import { describe, expect, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import * as DurableExecutionJournalSql from "../src/DurableExecutionJournalSql.js"
import { databaseUrl, postgresSkipReason, uniquePrefix } from "./utils/journals.js"

const password = "s3cret-never-printed"

/** A port nothing listens on: bound on port 0, then closed. */
const unusedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** The journal's error for a URL, built through `layerOn` on the real `PgClient.layer`. */
const connectFailure = (url: string) =>
  Layer.build(
    DurableExecutionJournalSql.layerOn(PgClient.layer({ url: Redacted.make(url) }), { prefix: uniquePrefix("conn") })
  ).pipe(Effect.scoped, Effect.flip)

// `pg` is @effect/sql-pg's dependency, not this package's: load the one @effect/sql-pg uses.
const pg: { readonly Pool: new(config: object) => any } = createRequire(
  createRequire(import.meta.url).resolve("@effect/sql-pg/PgClient")
)("pg")

/**
 * The journal's error for a URL, on a client that connects at its first use: the user's own pool (with a
 * short connect timeout) under the plain journal layer.
 */
const firstUseFailure = (url: string) =>
  Layer.build(
    DurableExecutionJournalSql.layer({ prefix: uniquePrefix("conn") }).pipe(
      Layer.provide(PgClient.layerFromPool({
        acquire: Effect.acquireRelease(
          Effect.sync(() => new pg.Pool({ connectionString: url, connectionTimeoutMillis: 3_000, max: 1 })),
          (pool) => Effect.promise(() => pool.end())
        )
      }))
    )
  ).pipe(
    Effect.scoped,
    Effect.flip,
    Effect.timeout("20 seconds"),
    Effect.flatMap((error) =>
      error._tag === "JournalError" ? Effect.succeed(error) : Effect.dieMessage(`not a JournalError: ${error}`)
    )
  )

/** `databaseUrl` with another user and database (and a password), keeping its host and port. */
const withUserAndDatabase = (user: string, database: string): string => {
  const url = new URL(databaseUrl)
  url.username = user
  url.password = password
  url.pathname = `/${database}`
  return url.toString()
}

/** The two ways of building the client, each with the journal's error for a URL. */
const clients = [
  { name: "a client layer that connects while it is built (layerOn)", failure: connectFailure },
  { name: "a client that connects at the journal's first statement", failure: firstUseFailure }
] as const

describe("a journal that cannot connect says why (issue 9 #20)", () => {
  for (const client of clients) {
    describe(`on ${client.name}`, () => {
      it.live("connection refused names the host and port", () =>
        Effect.gen(function*() {
          const port = yield* unusedPort
          const error = yield* client.failure(`postgres://postgres:${password}@127.0.0.1:${port}/test`)
          expect(error._tag).toBe("JournalError")
          expect(error.operation).toBe("connect")
          expect(error.message).toContain("refused")
          expect(error.message).toContain(`127.0.0.1:${port}`)
          expect(error.message).not.toContain(password)
          expect(error.retryable).toBe(true)
        }))

      it.live("an unknown database is named", () =>
        Effect.gen(function*() {
          if (postgresSkipReason !== undefined) return yield* Effect.logWarning(postgresSkipReason)
          const database = uniquePrefix("nodb")
          const error = yield* client.failure(withUserAndDatabase("postgres", database))
          expect(error.operation).toBe("connect")
          expect(error.message).toContain("unknown database")
          expect(error.message).toContain(database)
          expect(error.message).not.toContain(password)
          expect(error.retryable).toBe(false)
        }))

      it.live("an unknown role is named", () =>
        Effect.gen(function*() {
          if (postgresSkipReason !== undefined) return yield* Effect.logWarning(postgresSkipReason)
          const role = uniquePrefix("norole")
          const error = yield* client.failure(withUserAndDatabase(role, "test"))
          expect(error.operation).toBe("connect")
          expect(error.message).toContain("unknown role")
          expect(error.message).toContain(role)
          expect(error.message).not.toContain(password)
          expect(error.retryable).toBe(false)
        }))
    })
  }

  it.live("a malformed URL is called malformed, without its password", () =>
    Effect.gen(function*() {
      const error = yield* connectFailure(`postgres://postgres:${password}@[not-a-host/test`)
      expect(error.message).toContain("malformed")
      expect(error.message).not.toContain(password)
    }))

  it("the reason is read from the driver's cause chain", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), {
      code: "ECONNREFUSED",
      address: "127.0.0.1",
      port: 9
    })
    const error = DurableExecutionJournalSql.connectionError({ message: "PgClient: Failed to connect", cause: refused })
    expect(error.message).toContain("refused (127.0.0.1:9)")
    expect(error.message).toContain("PgClient: Failed to connect")
  })
})
