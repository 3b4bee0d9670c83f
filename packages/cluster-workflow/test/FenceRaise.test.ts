/**
 * A shard's fence raised by a pod is remembered as raised (later writes of the shard do not raise it again)
 * only once its transaction has committed. A raise whose commit failed, remembered anyway, left the pod
 * writing under a fence row that did not exist: every later write of the shard there, a Start included, was
 * refused as "the execution's shard moved". PostgreSQL: a deferred constraint trigger fails the commit of the
 * first raise after its statements have run.
 */
import { DurableExecutionJournal } from "@effect-cluster/cluster-workflow"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as Fenced from "../src/internal/cluster/fencedJournal.js"
import { tableNames } from "../src/internal/sql/tables.js"
import { pgClientLayer, postgresSkipReason, sqlJournalOn, uniquePrefix } from "./utils/journals.js"

describe.skipIf(postgresSkipReason !== undefined)("a shard's fence [postgres]", () => {
  it.scopedLive("whose raise did not commit is raised again by the next write, not taken as raised", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("fence")
      const context = yield* Layer.build(
        Layer.provideMerge(sqlJournalOn({ prefix }), pgClientLayer({ maxConnections: 2 }))
      )
      const journal = Context.get(context, DurableExecutionJournal.DurableExecutionJournal)
      const sql = Context.get(context, SqlClient.SqlClient).withoutTransforms()
      yield* Effect.orDie(Fenced.createTables(sql, prefix))
      const fences = `${prefix}_cluster_fences`
      // the commit of a transaction that wrote a fence row fails (once the trigger's flag is set)
      yield* Effect.orDie(sql.unsafe(`CREATE TABLE ${prefix}_fail (on_commit boolean NOT NULL)`))
      yield* Effect.orDie(sql.unsafe(`INSERT INTO ${prefix}_fail VALUES (true)`))
      yield* Effect.orDie(sql.unsafe(`CREATE FUNCTION ${prefix}_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT on_commit FROM ${prefix}_fail) THEN RAISE EXCEPTION 'commit refused (test)'; END IF;
  RETURN NULL;
END $$`))
      yield* Effect.orDie(sql.unsafe(`CREATE CONSTRAINT TRIGGER ${prefix}_fail_trigger AFTER INSERT OR UPDATE ON ${fences}
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${prefix}_fail_commit()`))
      yield* Effect.addFinalizer(() =>
        Effect.ignore(Effect.all([
          sql.unsafe(`DROP TABLE IF EXISTS ${fences}`),
          sql.unsafe(`DROP TABLE IF EXISTS ${prefix}_cluster_index`),
          sql.unsafe(`DROP TABLE IF EXISTS ${prefix}_fail`),
          sql.unsafe(`DROP FUNCTION IF EXISTS ${prefix}_fail_commit()`)
        ]))
      )
      const tables = yield* Effect.orDie(tableNames(prefix))
      const fenced = new Fenced.FencedJournal(journal, sql, prefix, tables.executions, {
        served: Effect.succeed(new Map([[3, 1]])),
        held: Effect.succeed(new Set([3])),
        releasing: Effect.succeed(new Map()),
        shardOf: () => 3,
        pod: "localhost:1"
      })
      const fenceOf = Effect.orDie(Effect.map(
        sql.unsafe<{ epoch: unknown }>(`SELECT epoch FROM ${fences} WHERE shard_id = 3`),
        (rows) => rows.map((row) => Number(row.epoch))
      ))
      // the first raise runs its statements, and its commit fails
      expect(Either.isLeft(yield* Effect.either(fenced.raiseFence(3, 1)))).toBe(true)
      expect(yield* fenceOf).toEqual([])
      // the database is fine again: the next raise writes the row
      yield* Effect.orDie(sql.unsafe(`UPDATE ${prefix}_fail SET on_commit = false`))
      expect(yield* fenced.raiseFence(3, 1)).toBe(true)
      expect(yield* fenceOf).toEqual([1])
    }))
})
