/**
 * The group committer's hold (a transactional activity's transaction commits its execution's writes): the
 * held execution's writes stay out of the batches, in order, while other executions keep committing. And
 * the journal's hold-back (`Journal.holdBack`, a shard's lapse on the cluster engine): the writes it holds
 * back stay queued, with their executions' later writes, while the others commit.
 */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type { Journal, JournalWrite } from "../src/DurableExecutionJournal.js"
import { DurableExecutionJournal } from "../src/DurableExecutionJournal.js"
import type { WriteOwner } from "../src/internal/groupCommit.js"
import * as GroupCommit from "../src/internal/groupCommit.js"
import { append, event, fence, key, memoryJournal, start } from "./utils/journals.js"

const owner = (): WriteOwner & { readonly failures: Array<unknown> } => {
  const failures: Array<unknown> = []
  return { broken: false, failures, onBroken: (result) => failures.push(result) }
}

it.scoped("a held execution's writes commit only with its holder's write, in order; others keep committing", () =>
  Effect.gen(function*() {
    const journal = yield* DurableExecutionJournal
    const held = key("held")
    const other = key("other")
    yield* journal.commit([start(held), start(other)])
    const committer = yield* GroupCommit.make(journal, { maxBatch: 64, retries: 0, retryBase: 10 })
    const heldOwner = owner()
    const otherOwner = owner()
    const sequences = Effect.map(journal.events(held, 0), (events) => events.map((e) => e.sequence))

    committer.submitPipelined(append(held, fence(), [event(0)]), heldOwner)
    const hold = yield* committer.hold(heldOwner)
    committer.submitPipelined(append(held, fence(), [event(1)]), heldOwner)
    // another execution's write commits at once, without the held ones
    expect(yield* committer.submit(append(other, fence(), [event(0)]), otherOwner).await).toEqual({ _tag: "Ok" })
    expect(yield* sequences).toEqual([])

    // the holder commits the held writes ahead of its own; a write submitted after `take` stays held
    const earlier = hold.take()
    expect(earlier.map((write) => write._tag === "Append" ? write.events[0]!.sequence : -1)).toEqual([0, 1])
    const results = yield* journal.commit([...earlier, append(held, fence(), [event(2)])])
    committer.submitPipelined(append(held, fence(), [event(3)]), heldOwner)
    yield* hold.release(Exit.succeed(results.slice(0, earlier.length)))
    expect(yield* committer.submit(append(held, fence(), [event(4)]), heldOwner).await).toEqual({ _tag: "Ok" })
    expect(yield* sequences).toEqual([0, 1, 2, 3, 4])

    // a holder whose transaction rolled back hands the taken writes back to the committer, in order
    const again = yield* committer.hold(heldOwner)
    committer.submitPipelined(append(held, fence(), [event(5)]), heldOwner)
    expect(again.take().length).toEqual(1)
    yield* again.release(undefined)
    expect(yield* committer.submit(append(held, fence(), [event(6)]), heldOwner).await).toEqual({ _tag: "Ok" })
    expect({ sequences: yield* sequences, failures: [...heldOwner.failures, ...otherOwner.failures] }).toEqual({
      sequences: [0, 1, 2, 3, 4, 5, 6],
      failures: []
    })
  }).pipe(Effect.provide(memoryJournal)))

it.scoped("a second hold of the same execution waits for the first to release", () =>
  Effect.gen(function*() {
    const journal = yield* DurableExecutionJournal
    const held = key("held")
    yield* journal.commit([start(held)])
    const committer = yield* GroupCommit.make(journal, { maxBatch: 64, retries: 0, retryBase: 10 })
    const heldOwner = owner()
    const first = yield* committer.hold(heldOwner)
    committer.submitPipelined(append(held, fence(), [event(0)]), heldOwner)
    const second = yield* Effect.fork(committer.hold(heldOwner))
    yield* Effect.yieldNow()
    const waiting = second.unsafePoll() === null
    yield* first.release(undefined)
    const next = yield* Fiber.join(second)
    // the first holder's writes went back to the committer (or to the second holder, which hands them on)
    next.take()
    yield* next.release(undefined)
    expect(yield* committer.submit(append(held, fence(), [event(1)]), heldOwner).await).toEqual({ _tag: "Ok" })
    expect({ waiting, sequences: (yield* journal.events(held, 0)).map((e) => e.sequence) }).toEqual({
      waiting: true,
      sequences: [0, 1]
    })
  }).pipe(Effect.provide(memoryJournal)))

/** The memory journal, holding back the writes `holding` matches (none when it is undefined). */
const holdingBack = (journal: Journal, holding: () => ((write: JournalWrite) => boolean) | undefined): Journal => ({
  ...journal,
  holdBack: Effect.sync(holding)
})

const firstSequence = (write: JournalWrite) => write._tag === "Append" ? write.events[0]!.sequence : -1

it.scoped("a write the journal holds back waits with its execution's later writes; others keep committing", () =>
  Effect.gen(function*() {
    const memory = yield* DurableExecutionJournal
    const lapsed = key("lapsed")
    const other = key("other")
    yield* memory.commit([start(lapsed), start(other)])
    let holding = true
    // only the lapsed execution's first write is held back: its later write stays behind it all the same
    const journal = holdingBack(memory, () =>
      holding ? (write) => write.key.executionId === "lapsed" && firstSequence(write) === 0 : undefined)
    const committer = yield* GroupCommit.make(journal, { maxBatch: 64, retries: 0, retryBase: 10 })
    const lapsedOwner = owner()
    const otherOwner = owner()
    const sequences = Effect.map(memory.events(lapsed, 0), (events) => events.map((e) => e.sequence))

    committer.submitPipelined(append(lapsed, fence(), [event(0)]), lapsedOwner)
    const later = committer.submit(append(lapsed, fence(), [event(1)]), lapsedOwner)
    expect(yield* committer.submit(append(other, fence(), [event(0)]), otherOwner).await).toEqual({ _tag: "Ok" })
    expect(yield* sequences).toEqual([])
    // the hold-back ends: both writes commit, in order
    holding = false
    expect(yield* later.await).toEqual({ _tag: "Ok" })
    expect({ sequences: yield* sequences, failures: [...lapsedOwner.failures, ...otherOwner.failures] }).toEqual({
      sequences: [0, 1],
      failures: []
    })
  }).pipe(Effect.provide(memoryJournal)))

it.scoped("a write held back past 5 s is committed anyway", () =>
  Effect.gen(function*() {
    const memory = yield* DurableExecutionJournal
    const lapsed = key("lapsed")
    yield* memory.commit([start(lapsed)])
    const committer = yield* GroupCommit.make(holdingBack(memory, () => () => true), {
      maxBatch: 64,
      retries: 0,
      retryBase: 10
    })
    const startedAt = Date.now()
    expect(yield* committer.submit(append(lapsed, fence(), [event(0)]), owner()).await).toEqual({ _tag: "Ok" })
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(5_000)
  }).pipe(Effect.provide(memoryJournal)), 15_000)
