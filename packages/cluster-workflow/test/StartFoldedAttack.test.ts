/**
 * Attacks on the run launched before its Start is committed: what that run may do before the Start is
 * known to have created the execution. Its own writes are fenced with the Start; a child it starts is
 * another execution's Start, which is not.
 */
import { Message } from "@effect-cluster/cluster"
import { Workflow } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Fiber, Option, Schema } from "effect"
import { describe } from "vitest"
import * as DurableExecutionJournalInMemory from "../src/DurableExecutionJournalInMemory.js"
import type { Journal, JournalWrite } from "../src/DurableExecutionJournal.js"
import { JournalError } from "../src/DurableExecutionJournal.js"
import { eventually, withEngineOn } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { describeJournals, freshJournal, startedBy } from "./utils/journals.js"

class Label extends Message.TaggedMessage<Label>()(
  "Label",
  Schema.String,
  Schema.String,
  { orderId: Schema.String, amount: Schema.Number },
  (_) => _.orderId
) {}

/** A parent whose first step is a child carrying the parent's amount (the child's id does not). */
const parentWithChild = (log: RunLog) =>
  Workflow.union(
    Workflow.make(Order, (order) =>
      Effect.gen(function*() {
        const label = yield* Workflow.executeChild(new Label({ orderId: order.orderId, amount: order.amount }), {
          childId: "label"
        })
        return label.length
      })),
    Workflow.make(Label, (label) => recorded(log, `label-amount-${label.amount}`, "printed", Schema.String))
  )

/** Fails every commit that holds a Start of `executionId` (a transaction lost on the way). */
const failingStartsOf = (inner: Journal, executionId: string): Journal => ({
  ...inner,
  commit: (writes: ReadonlyArray<JournalWrite>) =>
    writes.some((write) => write._tag === "Start" && write.key.executionId === executionId)
      ? Effect.fail(new JournalError({ operation: "commit", message: "connection lost", retryable: true }))
      : inner.commit(writes)
})

describeJournals("Start folded: a child started by a run whose Start is not committed", (journalCase) => {
  it.scoped("a Start refused for another payload starts no child and runs none of its activities", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = yield* freshJournal(journalCase)
      const key = { workflow: "Order", executionId: "o1" }
      // started by another engine (live claim) with another message
      yield* startedBy(journal, key, "other")
      yield* withEngineOn(journal, parentWithChild(log), (engine) =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(engine.send(new Order({ orderId: "o1", amount: 3 })))
          expect(Exit.isFailure(exit)).toBe(true)
          // let whatever the refused run started go on for a while
          for (let i = 0; i < 50; i++) yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
          expect(log.ids()).toEqual([])
          expect(yield* journal.list({ workflows: ["Label"], limit: 10 })).toEqual([])
        }))
    }))

  it.live("a Start that fails (the journal refuses it) leaves no child of an execution that does not exist", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const journal = failingStartsOf(yield* freshJournal(journalCase), "o2")
      yield* withEngineOn(journal, parentWithChild(log), (engine) =>
        Effect.gen(function*() {
          // (the caller gives up: `send` retries the start while the journal refuses it)
          const send = engine.send(new Order({ orderId: "o2", amount: 3 }))
          const exit = yield* Effect.exit(Effect.timeout(send, "1 second"))
          expect(Exit.isFailure(exit)).toBe(true)
          for (let i = 0; i < 50; i++) yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
          expect(Option.isNone(yield* journal.get({ workflow: "Order", executionId: "o2" }))).toBe(true)
          expect(log.ids()).toEqual([])
          expect(yield* journal.list({ workflows: ["Label"], limit: 10 })).toEqual([])
        }))
    }).pipe(Effect.scoped))
})

describe("Start folded: the caller interrupted while the Start is being committed", () => {
  it.live("the run launched before the Start keeps its claim renewed (or stops) once the Start creates it", () =>
    Effect.gen(function*() {
      const log = new RunLog()
      const inner = yield* DurableExecutionJournalInMemory.make
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const hold = yield* Deferred.make<void>()
      // The commit holding the Start is slow to answer (a database round trip).
      const journal: Journal = {
        ...inner,
        commit: (writes) =>
          writes.some((write) => write._tag === "Start")
            ? Effect.zipRight(
              Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release)),
              inner.commit(writes)
            )
            : inner.commit(writes)
      }
      const key = { workflow: "Order", executionId: "o9" }
      const longOne = Workflow.make(Order, (order) =>
        recorded(log, "long", order.amount, Schema.Number, { body: Deferred.await(hold) }))
      yield* withEngineOn(journal, longOne, (engine) =>
        Effect.gen(function*() {
          const caller = yield* Effect.fork(engine.send(new Order({ orderId: "o9", amount: 1 })))
          yield* Deferred.await(entered)
          // the caller gives up (a request timeout, a client gone) while the Start is on its way
          yield* Fiber.interrupt(caller)
          yield* Deferred.succeed(release, undefined)
          yield* eventually(() => log.count("long") === 1, "the activity runs")
          // the activity runs for 3 leases (the engine's leases are on the live clock)
          yield* Effect.sleep("3 seconds")
          const now = yield* Clock.currentTimeMillis
          const row = Option.getOrThrow(yield* inner.get(key))
          const stillRunsHere = (yield* engine.liveExecutions) === 1 && log.count("long") === 1
          // Either its claim was renewed, or it was stopped here: never running on a claim that has ended,
          // which another engine takes.
          if (stillRunsHere) {
            expect(row.claimOwner).toBe("A")
            expect(row.claimUntil!).toBeGreaterThan(now)
            expect((yield* inner.claim(key, "B", now, now + 1_000))._tag).toBe("Unavailable")
          }
          yield* Deferred.succeed(hold, undefined)
        }), { identity: "A", claimLease: "1 second" })
    }).pipe(Effect.scoped), 20_000)
})
