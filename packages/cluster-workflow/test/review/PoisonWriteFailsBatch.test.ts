/**
 * Issue 9 #17 (review: PoisonWriteFailsBatch). One execution's write that PostgreSQL refuses (an execution
 * id containing U+0000, which `json_to_recordset` cannot turn into text; an id over the b-tree key size
 * limit fails the same way) used to fail every other write committed in the same group-commit batch.
 *
 * Now: ids are validated at the API (a typed `EncodeError`, on every journal), and a batch the database
 * refuses for good is committed again execution by execution, so only the offending write fails.
 */
import { Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer } from "effect"
import { DurableExecutionJournal, type JournalWrite } from "../../src/DurableExecutionJournal.js"
import * as GroupCommit from "../../src/internal/groupCommit.js"
import { describeJournals, journalCases } from "../utils/journals.js"
import { Order } from "../utils/fixtures.js"

describeJournals("a refused write in a batch", (journalCase) => {
  it.scoped("an innocent start in the same batch fails too", () =>
    Effect.gen(function*() {
      const workflow = Workflow.make(Order, (order) => Effect.succeed(order.amount))
      const engine = yield* WorkflowEngine.make(workflow)
      // both starts are submitted before the committer runs: one batch
      const [bad, good] = yield* Effect.all([
        Effect.either(engine.start(new Order({ orderId: "bad\u0000id", amount: 1 }))),
        Effect.either(engine.start(new Order({ orderId: "good", amount: 2 })))
      ], { concurrency: "unbounded" })
      expect({ bad: bad._tag, good: good._tag === "Right" ? good.right : good.left }).toEqual({ bad: "Left", good: "good" })
      // the id is refused at the API, typed, on every journal
      expect(bad._tag === "Left" ? bad.left._tag : undefined).toBe("EncodeError")
      const long = yield* Effect.either(engine.start(new Order({ orderId: "x".repeat(3000), amount: 3 })))
      expect(long._tag === "Left" ? long.left._tag : undefined).toBe("EncodeError")
      const lone = yield* Effect.either(engine.start(new Order({ orderId: "a\ud800b", amount: 3 })))
      expect(lone._tag === "Left" ? lone.left._tag : undefined).toBe("EncodeError")
    }).pipe(Effect.provide(journalCase.layer)))
})

const start = (executionId: string): JournalWrite => ({
  _tag: "Start",
  key: { workflow: "Order", executionId },
  payload: JSON.stringify({ _tag: "Order", orderId: executionId, amount: 1 }),
  payloadHash: "h",
  version: "",
  parent: null,
  owner: "engine",
  claimUntil: 1_000_000,
  now: 0
})

/** An id PostgreSQL cannot compress under its b-tree entry limit (about 2,700 bytes). */
const incompressible = (length: number) => {
  let seed = 12345
  let id = ""
  for (let i = 0; i < length; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    id += String.fromCharCode(33 + (seed % 90))
  }
  return id
}

describeJournals("a write PostgreSQL refuses, in a group-commit batch", (journalCase) => {
  it.scoped("only the offending write fails; the others of its batch commit", () =>
    Effect.gen(function*() {
      const journal = Context.get(yield* Layer.build(journalCase.layer), DurableExecutionJournal)
      const committer = yield* GroupCommit.make(journal, { maxBatch: 16, retries: 2, retryBase: "1 millis" })
      // submitted together: one batch, which PostgreSQL refuses as a whole (one JSON parameter)
      const results = yield* Effect.all([
        committer.submit(start("before")).await,
        committer.submit(start("poison\u0000")).await,
        committer.submit(start(incompressible(4000))).await,
        committer.submit(start("after")).await
      ].map(Effect.exit))
      expect(committer.commits()).toBe(1)
      expect(results.map((exit) => Exit.isSuccess(exit) ? exit.value._tag : "failed")).toEqual([
        "Created",
        "failed",
        "failed",
        "Created"
      ])
      expect((yield* journal.get({ workflow: "Order", executionId: "after" }))._tag).toBe("Some")
    }))
}, journalCases.filter((journalCase) => journalCase.name === "postgres"))
