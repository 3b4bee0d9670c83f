/**
 * Payload identity (issue 9, "correct only by luck"): the start payload's hash is a 64-bit
 * non-cryptographic hash, so the engine compares the stored payload itself. Each test stores a row whose
 * hash is the hash of ANOTHER payload (a collision, constructed) and checks that the other payload is
 * still refused: on the journal's existing row, on a live execution, and when a start whose commit outcome
 * was unknown is resolved by reading. In-memory, SQLite file and PostgreSQL.
 */
import { WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { assert, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Schema } from "effect"
import * as DurableExecutionJournal from "../src/DurableExecutionJournal.js"
import * as Workflow from "../src/Workflow.js"
import * as WorkflowError from "../src/WorkflowError.js"
import { payloadHash, samePayload } from "../src/internal/codec.js"
import { resolveByReading } from "../src/internal/groupCommit.js"
import { awaitStatus } from "./utils/engine.js"
import { Order } from "./utils/fixtures.js"
import { describeJournals, freshJournal } from "./utils/journals.js"

const encoded = (order: Order) => JSON.stringify(Schema.encodeSync(Order)(order))

const stored = new Order({ orderId: "o1", amount: 1 })
const colliding = new Order({ orderId: "o1", amount: 2 })

/** The Start write of `stored`'s payload, hashed as if it were `colliding`'s. */
const collidingStart = (
  options: { readonly claimUntil: number }
): Extract<DurableExecutionJournal.JournalWrite, { _tag: "Start" }> => ({
  _tag: "Start",
  key: { workflow: "Order", executionId: "o1" },
  payload: encoded(stored),
  payloadHash: payloadHash(encoded(colliding)),
  version: "",
  parent: null,
  owner: "earlier-engine",
  claimUntil: options.claimUntil,
  now: 0
})

it("samePayload compares the payload, not only its hash", () => {
  const row = { payload: encoded(stored), payloadHash: payloadHash(encoded(colliding)) }
  expect(samePayload(row, encoded(colliding), payloadHash(encoded(colliding)))).toBe(false)
  expect(samePayload(row, encoded(stored), payloadHash(encoded(colliding)))).toBe(true)
  expect(samePayload(row, encoded(stored), payloadHash(encoded(stored)))).toBe(false)
})

describeJournals("payload identity under a hash collision", (journalCase) => {
  it.scoped("a finished execution refuses another payload with the same hash", () =>
    Effect.gen(function*() {
      const journal = yield* freshJournal(journalCase)
      const [created] = yield* journal.commit([collidingStart({ claimUntil: 0 })])
      assert(created?._tag === "Created")
      yield* journal.commit([{
        _tag: "Append",
        key: { workflow: "Order", executionId: "o1" },
        fence: { owner: "earlier-engine", epoch: created.epoch },
        events: [],
        update: { status: "completed", result: JSON.stringify({ _tag: "Success", value: 7 }), completedAt: 0 },
        now: 0
      }])
      const engine = yield* WorkflowEngine.makeScoped(Workflow.make(Order, () => Effect.succeed(0))).pipe(
        Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
      )
      const refused = yield* Effect.flip(engine.execute(colliding))
      expect(refused).toBeInstanceOf(WorkflowError.PayloadMismatchError)
    }))

  it.scoped("a live execution refuses another payload with the same hash", () =>
    Effect.gen(function*() {
      const journal = yield* freshJournal(journalCase)
      yield* journal.commit([collidingStart({ claimUntil: 0 })])
      const gate = yield* Deferred.make<void>()
      const engine = yield* WorkflowEngine.makeScoped(
        Workflow.make(Order, (order) => Effect.as(Deferred.await(gate), order.amount * 100))
      ).pipe(Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal))
      // the unfinished execution is resumed from its row (its claim has expired) and stays running
      const result = yield* Effect.fork(engine.result("o1"))
      yield* awaitStatus(engine, "o1", "Running")
      const refused = yield* Effect.flip(engine.execute(colliding))
      expect(refused).toBeInstanceOf(WorkflowError.PayloadMismatchError)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(result)).toEqual(Exit.succeed(100))
    }))

  it.scoped("a start resolved by reading is not taken for a start of another payload", () =>
    Effect.gen(function*() {
      const journal = yield* freshJournal(journalCase)
      yield* journal.commit([collidingStart({ claimUntil: 10_000 })])
      const mine: DurableExecutionJournal.JournalWrite = {
        ...collidingStart({ claimUntil: 10_000 }),
        payload: encoded(colliding)
      }
      const [resolved] = yield* resolveByReading(journal, [mine])
      expect(Option.isNone(resolved!)).toBe(true)
      const [own] = yield* resolveByReading(journal, [collidingStart({ claimUntil: 10_000 })])
      expect(Option.getOrUndefined(own!)).toEqual({ _tag: "Created", epoch: 1 })
    }))
})
