/**
 * Resolving a commit whose outcome is unknown by reading (issue 9, "correct only by luck"): an Append is
 * taken as committed only when the execution is still at the write's claim epoch and every event matches
 * in sequence, kind, step and attempt, so another engine's write of the same step is never mistaken for
 * it. Runs the resolution itself against each journal (in-memory, SQLite file, PostgreSQL).
 */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { DurableExecutionJournal } from "../src/DurableExecutionJournal.js"
import { resolveByReading } from "../src/internal/groupCommit.js"
import { append, describeJournals, event, fence, key, start } from "./utils/journals.js"

const attemptMarker = (sequence: number, attempt: number) =>
  event(sequence, { kind: "ActivityAttempted", stepId: "charge", attempt, body: JSON.stringify({ attempt }) })

const resolved = (write: Parameters<typeof resolveByReading>[1][number]) =>
  Effect.flatMap(DurableExecutionJournal, (journal) =>
    Effect.map(resolveByReading(journal, [write]), ([result]) => Option.getOrUndefined(result!)))

describeJournals("unknown-outcome resolution of an Append", (journal) => {
  const run = <A, E>(body: Effect.Effect<A, E, DurableExecutionJournal>) => Effect.provide(body, journal.layer)

  it.effect("its own committed write resolves as Ok", () =>
    run(Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("own")
      yield* j.commit([start(k)])
      const write = append(k, fence("A", 1), [attemptMarker(0, 1)])
      expect(yield* j.commit([write])).toEqual([{ _tag: "Ok" }])
      expect(yield* resolved(write)).toEqual({ _tag: "Ok" })
    })))

  it.effect("another engine's later attempt of the same step is not taken for it", () =>
    run(Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("attempt")
      yield* j.commit([start(k, { claimUntil: 150 })])
      // A's write (attempt 1, epoch 1) never committed; B took the execution over and wrote attempt 2.
      const lost = append(k, fence("A", 1), [attemptMarker(0, 1)])
      yield* j.claim(k, "B", 200, 10_000)
      expect(yield* j.commit([append(k, fence("B", 2), [attemptMarker(0, 2)])])).toEqual([{ _tag: "Ok" }])
      expect(yield* resolved(lost)).toBeUndefined()
    })))

  it.effect("the same event written under another engine's epoch is not taken for it", () =>
    run(Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("epoch")
      yield* j.commit([start(k, { claimUntil: 150 })])
      const lost = append(k, fence("A", 1), [attemptMarker(0, 1)])
      yield* j.claim(k, "B", 200, 10_000)
      expect(yield* j.commit([append(k, fence("B", 2), [attemptMarker(0, 1)])])).toEqual([{ _tag: "Ok" }])
      expect(yield* resolved(lost)).toBeUndefined()
      // committed again, the lost write is fenced rather than acknowledged
      expect((yield* j.commit([lost]))[0]!._tag).toBe("Fenced")
    })))
})

