/**
 * Crash at random journal-write boundaries: for seeded crash points, the final result equals the
 * crash-free result, and no step whose result was recorded before a crash runs again. Also a crash at
 * each commit in turn, before it and after it (the first: a new execution's Start with its first attempt
 * marker, submitted while the execution already runs).
 */
import { expect, it } from "@effect/vitest"
import type { DurableExecutionJournal } from "@effect-cluster/cluster-workflow"
import { Effect, Exit, FastCheck } from "effect"
import { ioTurn } from "./utils/engine.js"

type JournalError = DurableExecutionJournal.JournalError
import { describeJournals, freshJournal, type JournalCase } from "./utils/journals.js"
import { atBatch, type CrashPoint, runUntilCrash } from "./utils/crash.js"
import { drive, makeWorkflow, type Run } from "./utils/everyFeature.js"
import { Order } from "./utils/fixtures.js"

/**
 * Reads the journal after a simulated crash. On SQLite the dead run's connection was just closed with
 * its transaction open, and the file may answer SQLITE_BUSY for a moment: retry on I/O turns.
 */
const settledRead = <A>(read: Effect.Effect<A, JournalError>): Effect.Effect<A, JournalError> => {
  const loop = (attempt: number): Effect.Effect<A, JournalError> =>
    Effect.catchIf(read, (error) => error.retryable && attempt < 500, () => Effect.zipRight(ioTurn, loop(attempt + 1)))
  return loop(0)
}

/** Runs until crash after crash (a fresh point per run), then to the end. */
const scenario = (journalCase: JournalCase, crashPoints: ReadonlyArray<() => CrashPoint>, amount: number) =>
  Effect.gen(function*() {
    const runs: Array<Run> = []
    let run = 0
    const { Go, workflow } = makeWorkflow(runs, () => run)
    const journal = yield* freshJournal(journalCase)
    const message = new Order({ orderId: "o1", amount })
    /** per crash: the steps whose result the journal held when the process died */
    const recordedAt: Array<Set<string>> = []
    for (const point of crashPoints) {
      const exit = yield* runUntilCrash(journal, workflow, point(), (engine, restore) => drive(engine, message, Go, restore))
      if (exit !== "crashed") return { exit, runs, recordedAt }
      const recorded = new Set<string>()
      for (const key of [{ workflow: "Order", executionId: "o1" }, { workflow: "Parcel", executionId: "o1/p" }]) {
        for (const event of yield* settledRead(journal.events(key, 0))) {
          if (event.kind === "StepCompleted") recorded.add(`${event.stepKind}:${event.stepId}`)
        }
      }
      recordedAt.push(recorded)
      run++
    }
    const exit = yield* runUntilCrash(journal, workflow, undefined, (engine, restore) => drive(engine, message, Go, restore))
    return { exit, runs, recordedAt }
  })

describeJournals("crash recovery (property)", (journalCase) => {
  it.scoped("for seeded crash points, the result equals the crash-free run and no recorded step runs again", () =>
    Effect.gen(function*() {
      const samples = FastCheck.sample(
        FastCheck.tuple(
          FastCheck.array(FastCheck.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 4 }),
          FastCheck.integer({ min: 1, max: 2 })
        ),
        { seed: 20261125, numRuns: { memory: 150, sqlite: 30, postgres: 12 }[journalCase.name] }
      )
      const expected = new Map<number, unknown>()
      for (const amount of [1, 2]) {
        expected.set(amount, (yield* Effect.scoped(scenario(journalCase, [], amount))).exit)
      }
      expect(expected.get(2)).toEqual(Exit.succeed(121))
      expect(expected.get(1)).toEqual(Exit.fail("e failed"))
      for (const [crashPoints, amount] of samples) {
        const points = crashPoints.map((n) => () => atBatch(n))
        const { exit, recordedAt, runs } = yield* Effect.scoped(scenario(journalCase, points, amount))
        expect(exit, `crash points ${crashPoints}`).toEqual(expected.get(amount))
        recordedAt.forEach((recorded, crash) => {
          const rerun = runs.filter((r) => r.run > crash && recorded.has(r.id))
          expect(rerun, `crash points ${crashPoints}: steps recorded before crash ${crash} ran again`).toEqual([])
        })
      }
    }), 120_000)
})

describeJournals("crash recovery (each commit)", (journalCase) => {
  it.scoped("a crash before or after each commit of the first run: the crash-free result, no recorded step again", () =>
    Effect.gen(function*() {
      // (PostgreSQL, the slowest: the success path only; its seeded property above also crashes the failure path)
      for (const amount of journalCase.name === "postgres" ? [2] : [2, 1]) {
        const expected = (yield* Effect.scoped(scenario(journalCase, [], amount))).exit
        for (const mode of ["before", "after"] as const) {
          // until the first run ends before its n-th commit
          for (let n = 0;; n++) {
            const { exit, recordedAt, runs } = yield* Effect.scoped(scenario(journalCase, [() => atBatch(n, mode)], amount))
            expect(exit, `amount ${amount}, crash ${mode} commit ${n}`).toEqual(expected)
            if (recordedAt.length === 0) break
            const rerun = runs.filter((r) => r.run > 0 && recordedAt[0]!.has(r.id))
            expect(rerun, `amount ${amount}, crash ${mode} commit ${n}: recorded steps ran again`).toEqual([])
          }
        }
      }
      // (each restart on PostgreSQL waits out the 0.9 s grace before the dead engine's claims are released)
    }), 300_000)
})
