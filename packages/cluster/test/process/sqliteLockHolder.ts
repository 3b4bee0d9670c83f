/**
 * A child process of SqliteBusy.test.ts: another process on the same SQLite file. On the stdin line
 * `lock <ms>` it opens a write transaction (it then holds the file's write lock), prints `locked`, keeps
 * it for `<ms>` on its own clock, commits and prints `released`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Stream } from "effect"
import { createInterface } from "node:readline"
import * as StorageSql from "../../src/node/StorageSql.js"

const file = process.argv[2]!

const lines = Stream.async<string>((emit) => {
  createInterface({ input: process.stdin }).on("line", (line) => void emit.single(line))
})

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS busy_test (writer TEXT NOT NULL)`
  yield* Console.log("ready")
  yield* Stream.runForEach(lines, (line) => {
    const hold = /^lock (\d+)$/.exec(line)
    if (hold === null) return Effect.void
    return sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO busy_test (writer) VALUES ('child')`
      yield* Console.log("locked")
      yield* Effect.sleep(Number(hold[1]))
    })).pipe(Effect.zipRight(Console.log("released")))
  })
}).pipe(Effect.provide(StorageSql.layerClient(file)))

NodeRuntime.runMain(program)
