/**
 * Claim expiry is decided on the database's clock (issue 9, "correct only by luck"): engines on machines
 * whose clocks disagree by minutes agree on every claim. Each engine (or journal connection) here runs on a
 * clock of its own, 10 minutes ahead of or behind the machine's, as a skewed machine would.
 *
 * Before the fix, the journal compared the absolute instants of the engines' clocks: the engine ahead took
 * the live claim of the one behind (its "now" was past that claim's end), and a claim taken by the engine
 * ahead, already ended, stayed live for the one behind for another 20 minutes.
 */
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect, it } from "@effect/vitest"
import { Clock, Context, Deferred, Effect, Fiber, Layer, Option, Schema, TestClock } from "effect"
import { describeJournals, key, sqlJournalCases, start } from "./utils/journals.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"

const minutes = 60_000
const lease = 30_000

/** The machine's clock moved by `offset` milliseconds (a machine whose clock is wrong by that much). */
const skewedClock = (offset: number): Clock.Clock => {
  const live = Clock.make()
  const millis = () => live.unsafeCurrentTimeMillis() + offset
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: millis,
    currentTimeMillis: Effect.sync(millis),
    unsafeCurrentTimeNanos: () => live.unsafeCurrentTimeNanos() + BigInt(offset) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => live.unsafeCurrentTimeNanos() + BigInt(offset) * 1_000_000n),
    sleep: (duration) => live.sleep(duration)
  }
}

const ahead = skewedClock(10 * minutes)
const behind = skewedClock(-10 * minutes)

/** Runs `effect` with `clock` as the Clock (a journal or engine on a machine with that clock). */
const on = (clock: Clock.Clock) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withClock(effect, clock)

describeJournals("claims on the database's clock", (journalCase) => {
  /** A journal of its own (a connection / pool) on the shared database. */
  const journalOn = (layer: Layer.Layer<DurableExecutionJournal.DurableExecutionJournal>) =>
    Effect.map(Layer.build(layer), Context.get(DurableExecutionJournal.DurableExecutionJournal))

  it.live("an engine whose clock is ahead neither takes a live claim of one behind nor sees it expired", () =>
    Effect.gen(function*() {
      const shared = yield* journalCase.shared!
      const a = yield* journalOn(shared.journal())
      const b = yield* journalOn(shared.journal())
      const k = key("e1")
      // Engine A, 10 minutes behind, starts the execution with a 30 s lease.
      const nowA = behind.unsafeCurrentTimeMillis()
      expect(yield* on(behind)(a.commit([start(k, { owner: "A", now: nowA, claimUntil: nowA + lease })])))
        .toEqual([{ _tag: "Created", epoch: 1 }])
      // Engine B, 10 minutes ahead: A's claim is live for it too.
      const nowB = ahead.unsafeCurrentTimeMillis()
      const taken = yield* on(ahead)(b.claim(k, "B", nowB, nowB + lease))
      expect(taken).toMatchObject({ _tag: "Unavailable", row: { claimOwner: "A", claimEpoch: 1 } })
      expect(yield* on(ahead)(b.resumable([k.workflow], "B", nowB, 10))).toEqual([])
      // ... and ends 30 s from now on B's clock: B reads the claim's end in its own clock.
      const row = Option.getOrThrow(yield* on(ahead)(b.get(k)))
      expect(row.claimUntil! - nowB).toBeGreaterThan(lease - 5_000)
      expect(row.claimUntil! - nowB).toBeLessThanOrEqual(lease + 1_000)
      const next = yield* on(ahead)(b.nextClaimExpiry!([k.workflow], "B"))
      expect(next?.owner).toEqual("A")
      expect(next!.claimUntil - nowB).toBeGreaterThan(lease - 5_000)
      expect(next!.claimUntil - nowB).toBeLessThanOrEqual(lease + 1_000)
      // A renews it, on its own clock: still A's, for another lease.
      const renewed = yield* on(behind)(a.renew("A", [{ key: k, epoch: 1 }], behind.unsafeCurrentTimeMillis() + lease))
      expect(renewed[0]).toMatchObject({ claimOwner: "A", claimEpoch: 1 })
      expect((yield* on(ahead)(b.claim(k, "B", ahead.unsafeCurrentTimeMillis(), ahead.unsafeCurrentTimeMillis() + lease)))._tag)
        .toEqual("Unavailable")
    }).pipe(Effect.scoped))

  it.live("a claim ended on the clock of an engine ahead is over for an engine behind at once", () =>
    Effect.gen(function*() {
      const shared = yield* journalCase.shared!
      const a = yield* journalOn(shared.journal())
      const b = yield* journalOn(shared.journal())
      const k = key("e2")
      // Engine A, 10 minutes ahead, starts the execution with a claim that has already ended (it died).
      const nowA = ahead.unsafeCurrentTimeMillis()
      yield* on(ahead)(a.commit([start(k, { owner: "A", now: nowA, claimUntil: nowA - 1 })]))
      // Engine B, 10 minutes behind, resumes it now, not 20 minutes later.
      const nowB = behind.unsafeCurrentTimeMillis()
      expect(yield* on(behind)(b.resumable([k.workflow], "B", nowB, 10))).toEqual([k])
      const taken = yield* on(behind)(b.claim(k, "B", nowB, nowB + lease))
      expect(taken).toMatchObject({ _tag: "Claimed", row: { claimOwner: "B", claimEpoch: 2 } })
      // B's claim, in B's clock, ends a lease from B's now; A, ahead, sees it live.
      expect(taken._tag === "Claimed" && taken.row.claimUntil! - nowB).toBeGreaterThan(lease - 5_000)
      const nowA2 = ahead.unsafeCurrentTimeMillis()
      expect((yield* on(ahead)(a.claim(k, "A2", nowA2, nowA2 + lease)))._tag).toEqual("Unavailable")
    }).pipe(Effect.scoped))

  it.live("an engine on a clock ahead leaves the running executions of an engine behind to it", () =>
    Effect.gen(function*() {
      const shared = yield* journalCase.shared!
      const log = new RunLog()
      const hold = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const workflow = Workflow.make(Order, () =>
        recorded(log, "charge", 1, Schema.Number, {
          body: Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(hold))
        }))
      // each engine with a journal (connection) of its own, open for the test's scope
      const engineOn = (clock: Clock.Clock, identity: string) =>
        Effect.flatMap(journalOn(shared.journal()), (journal) =>
          WorkflowEngine.make(workflow, { identity }).pipe(
            Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
            on(clock)
          ))
      // Engine A, 10 minutes behind, runs o1; its activity waits.
      const engineA = yield* engineOn(behind, "A")
      const first = yield* Effect.fork(on(behind)(engineA.execute(new Order({ orderId: "o1", amount: 1 }))))
      yield* Deferred.await(started)
      // Engine B, 10 minutes ahead, starts and resumes what nobody runs: not o1, whose claim is live.
      const engineB = yield* engineOn(ahead, "B")
      const journal = yield* journalOn(shared.journal())
      const row = Option.getOrThrow(yield* on(ahead)(journal.get({ workflow: "Order", executionId: "o1" })))
      expect(row).toMatchObject({ claimOwner: "A", claimEpoch: 1, status: "running" })
      expect(log.count("charge")).toEqual(1)
      // A finishes it; B reads the result.
      yield* Deferred.succeed(hold, undefined)
      expect(yield* Fiber.join(first)).toEqual(1)
      expect(yield* on(ahead)(engineB.execute(new Order({ orderId: "o1", amount: 1 })))).toEqual(1)
      expect(log.count("charge")).toEqual(1)
    }).pipe(Effect.scoped))

  it.scoped("a journal decides claim expiry on a TestClock only when told to (clock: \"test\"); by default the database's clock decides", () =>
    Effect.gen(function*() {
      const shared = yield* journalCase.shared!
      const expiryAfterAnHour = (clock: "database" | "test", id: string) =>
        Effect.gen(function*() {
          const journal = yield* journalOn(shared.journal({ clock }))
          const k = key(id)
          const now = yield* Clock.currentTimeMillis
          yield* journal.commit([start(k, { owner: "A", now, claimUntil: now + lease })])
          yield* TestClock.adjust("1 hour")
          const later = yield* Clock.currentTimeMillis
          return (yield* journal.claim(k, "B", later, later + lease))._tag
        })
      // the users' default: the TestClock's hour is not the database's; A's claim is still live
      expect(yield* expiryAfterAnHour("database", "t1")).toEqual("Unavailable")
      // on the test clock the hour passes for the journal too: A's claim has ended
      expect(yield* expiryAfterAnHour("test", "t2")).toEqual("Claimed")
    }))
}, sqlJournalCases)
