/**
 * PostgreSQL: how an engine hears inbox changes announced by NOTIFY.
 *
 * - An engine that signals an execution and leaves it to another live engine of its workflow (a CLI, a
 *   webhook handler) must not take it on hearing its own announcement of that signal, however long its
 *   decision takes. It used to: the announcement could arrive before the engine had noted the pass-through,
 *   and the CLI claimed the execution, then exited holding the claim (the execution waited for its lease).
 * - An engine that hears another's announcement and meets the execution's row locked by another
 *   transaction claims it once the lock ends. It used to give up, and the wake was lost until a later look.
 */
import { DurableDeferred, DurableExecutionJournal, DurableExecutionJournalSql, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Option, Schema, Scope } from "effect"
import { awaitStatus, eventuallyEffect } from "./utils/engine.js"
import { Order, recorded, RunLog } from "./utils/fixtures.js"
import { postgresSkipReason, sharedPostgres, wrappingRegistrations } from "./utils/journals.js"
import { enginesOf } from "../src/internal/engineShared.js"
import { isRowLocked } from "../src/internal/rowLocked.js"

const Approval = DurableDeferred.make("approval", { success: Schema.Number })

/** Waits for `approval`, then runs `finish`: each engine records its runs in its own log. */
const approvalWorkflow = (log: RunLog) =>
  Workflow.make(Order, () =>
    Effect.gen(function*() {
      yield* recorded(log, "prepare", undefined, Schema.Void)
      const approved = yield* DurableDeferred.await(Approval)
      yield* recorded(log, "finish", undefined, Schema.Void)
      return approved
    }))

/** A journal whose registrations' watches pass each change heard to `tap` first (`undefined`: "something"). */
const tappingWatch = (inner: DurableExecutionJournal.Journal, tap: (executionId: string | undefined, deliver: () => void) => void) =>
  wrappingRegistrations(inner, (registration) =>
    Effect.succeed({
      ...registration,
      watchChanges: registration.watchChanges === undefined ? undefined : (onChange) =>
        registration.watchChanges!((key) => tap(key?.executionId, () => onChange(key)))
    }))

const setup = Effect.gen(function*() {
  const shared = yield* sharedPostgres
  const layerA = yield* Layer.build(shared.journal())
  const layerB = yield* Layer.build(shared.journal())
  const other = Context.get(yield* Layer.build(shared.journal()), SqlClient.SqlClient)
  const tables = yield* DurableExecutionJournalSql.tableNames(shared.prefix)
  /** Announces a change as another process would (its own NOTIFY, outside any transaction). */
  const announce = (workflow: string, executionId: string) =>
    other`SELECT pg_notify(${tables.channel}, ${JSON.stringify([workflow, executionId])})`
  const claimOwner = (executionId: string) =>
    Effect.map(
      other<{ claim_owner: string | null }>`SELECT claim_owner FROM ${other(tables.executions)} WHERE execution_id = ${executionId}`,
      (rows) => rows[0]?.claim_owner ?? null
    )
  /** Another session locks an execution's row; the returned effect ends its transaction (so does the scope). */
  const lockRow = (executionId: string) =>
    Effect.gen(function*() {
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(other.withTransaction(Effect.gen(function*() {
        yield* other`SELECT 1 FROM ${other(tables.executions)} WHERE execution_id = ${executionId} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })))
      yield* Deferred.await(locked)
      yield* Effect.addFinalizer(() => Deferred.succeed(unlock, undefined))
      return Effect.zipRight(Deferred.succeed(unlock, undefined), Fiber.join(holder))
    })
  return {
    journalA: Context.get(layerA, DurableExecutionJournal.DurableExecutionJournal),
    journalB: Context.get(layerB, DurableExecutionJournal.DurableExecutionJournal),
    announce,
    claimOwner,
    lockRow
  }
})

const engineOn = (journal: DurableExecutionJournal.Journal, log: RunLog, identity: string) =>
  WorkflowEngine.make(approvalWorkflow(log), { identity, claimLease: "10 minutes" }).pipe(
    Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
  )

/** Engine A starts o1 and closes with it suspended (waiting for `approval`); A's runs. */
const leftSuspendedByA = (journal: DurableExecutionJournal.Journal) =>
  Effect.gen(function*() {
    const logA = new RunLog()
    yield* Effect.scoped(Effect.gen(function*() {
      const a = yield* engineOn(journal, logA, "A")
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(a, "o1", "Suspended")
    }))
    return logA
  })

describe.skipIf(postgresSkipReason !== undefined)("PostgreSQL: an engine and the announcements it hears", () => {
  it.live("an engine that leaves a signalled execution to another live engine does not take it on its own announcement", () =>
    Effect.gen(function*() {
      const { announce, claimOwner, journalA, journalB } = yield* setup
      const logA = new RunLog()
      const logB = new RunLog()
      const a = yield* engineOn(journalA, logA, "A")
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(a, "o1", "Suspended")
      yield* eventuallyEffect(a.liveExecutions, (n) => n === 0)
      // B (the CLI) decides whether to leave o1 to others only once its watch has heard a marker announced
      // after its signal: its own announcement of the signal, if it heard it, came before the marker.
      const heardByB: Array<string | undefined> = []
      const markerHeard = yield* Deferred.make<void>()
      const tapped = tappingWatch(journalB, (executionId, deliver) => {
        heardByB.push(executionId)
        if (executionId === "marker") Deferred.unsafeDone(markerHeard, Exit.void)
        deliver()
      })
      const otherLiveEngines = tapped.otherLiveEngines!
      const slowToDecide: DurableExecutionJournal.Journal = {
        ...tapped,
        otherLiveEngines: (registration, workflow) =>
          Effect.zipRight(
            Effect.zipRight(Effect.orDie(announce("none", "marker")), Deferred.await(markerHeard)),
            otherLiveEngines(registration, workflow)
          )
      }
      yield* Effect.scoped(Effect.gen(function*() {
        const b = yield* engineOn(slowToDecide, logB, "B")
        expect(yield* b.signal("o1", Approval, Exit.succeed(42))).toEqual({ stored: true })
      }))
      expect(heardByB).not.toContain("o1")
      expect(heardByB).toContain("marker")
      // A, the live engine, runs it; B ran nothing and holds no claim
      expect(yield* a.result("o1")).toEqual(Exit.succeed(42))
      expect(logA.ids()).toEqual(["prepare", "finish"])
      expect(logB.ids()).toEqual([])
      expect(yield* claimOwner("o1")).toBeNull()
    }).pipe(Effect.scoped), 30_000)

  it.live("an engine that hears of a change while the row is locked by another transaction claims it once the lock ends", () =>
    Effect.gen(function*() {
      const { claimOwner, journalA, journalB, lockRow } = yield* setup
      const logA = new RunLog()
      // A's watch holds back o1's announcements until the row is locked; A's claims that meet the lock are
      // counted
      const held: Array<() => void> = []
      let holding = true
      const lockedClaims = { count: 0 }
      const tapped = tappingWatch(journalA, (executionId, deliver) => {
        if (holding && executionId === "o1") held.push(deliver)
        else deliver()
      })
      const journal: DurableExecutionJournal.Journal = {
        ...tapped,
        claim: (...args) =>
          Effect.tapError(tapped.claim(...args), (error) =>
            Effect.sync(() => {
              if (isRowLocked(error)) lockedClaims.count++
            }))
      }
      const a = yield* engineOn(journal, logA, "A")
      yield* a.sendDiscard(new Order({ orderId: "o1", amount: 1 }))
      yield* awaitStatus(a, "o1", "Suspended")
      yield* eventuallyEffect(a.liveExecutions, (n) => n === 0)
      // B (a CLI) stores the signal and leaves o1 to A, whose watch holds the announcement back
      yield* Effect.scoped(Effect.gen(function*() {
        const b = yield* engineOn(journalB, new RunLog(), "B")
        expect(yield* b.signal("o1", Approval, Exit.succeed(42))).toEqual({ stored: true })
      }))
      yield* eventuallyEffect(Effect.sync(() => held.length), (n) => n > 0)
      const unlock = yield* lockRow("o1")
      holding = false
      for (const deliver of held) deliver()
      // A's claim meets the lock (and looks again for a while) before the lock ends
      yield* eventuallyEffect(Effect.sync(() => lockedClaims.count), (n) => n > 0)
      expect(Option.fromNullable(yield* claimOwner("o1"))).toEqual(Option.none())
      yield* unlock
      // no later look would find it for ten minutes (the lease, and so the liveness watch's repair)
      expect(yield* Effect.timeout(a.result("o1"), "20 seconds")).toEqual(Exit.succeed(42))
      expect(logA.ids()).toEqual(["prepare", "finish"])
    }).pipe(Effect.scoped), 40_000)

  it.live("a claim that an engine gets while it closes is given up at once, not left to its lease", () =>
    Effect.gen(function*() {
      const { claimOwner, journalA, journalB } = yield* setup
      // A starts o1 and closes with it suspended: B is then the only engine
      const logA = yield* leftSuspendedByA(journalA)
      // B's claims of o1 wait for `go`: B signals o1 (and so claims it), and is closed while that claim waits
      const claimWaits = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      const gated: DurableExecutionJournal.Journal = {
        ...journalB,
        claim: (key, ...rest) =>
          key.executionId !== "o1" ? journalB.claim(key, ...rest) : Effect.zipRight(
            Effect.zipRight(Deferred.succeed(claimWaits, undefined), Deferred.await(go)),
            journalB.claim(key, ...rest)
          )
      }
      const scope = yield* Scope.make()
      const b = yield* Scope.extend(engineOn(gated, new RunLog(), "B"), scope)
      const signalled = yield* Effect.fork(b.signal("o1", Approval, Exit.succeed(42)))
      yield* Deferred.await(claimWaits)
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.succeed(go, undefined)
      expect(yield* Fiber.join(signalled)).toEqual({ stored: true })
      expect(yield* claimOwner("o1")).toBeNull()
      // the next engine resumes it at once (with the claim left to its lease, it waited ten minutes)
      const c = yield* engineOn(journalA, logA, "C")
      expect(yield* Effect.timeout(c.result("o1"), "20 seconds")).toEqual(Exit.succeed(42))
      expect(logA.ids()).toEqual(["prepare", "finish"])
    }).pipe(Effect.scoped), 40_000)

  // The claim made on an announcement runs in one of the engine's background fibers, which the close
  // interrupts: a claim the database had granted when that interruption came (its answer still on the way)
  // was never read, nor given up, and the execution waited for the lease of an engine that was gone.
  it.live("a claim whose answer is on its way when the engine closes is given up, not left to its lease", () =>
    Effect.gen(function*() {
      const { announce, claimOwner, journalA, journalB } = yield* setup
      // A starts o1 and closes with it suspended: B is then the only engine
      const logA = yield* leftSuspendedByA(journalA)
      // B's claim of o1 is granted by the database, and its answer reaches B only once `go` is done
      const granted = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      const gated: DurableExecutionJournal.Journal = {
        ...journalB,
        claim: (key, ...rest) =>
          key.executionId !== "o1" ? journalB.claim(key, ...rest) : Effect.tap(
            journalB.claim(key, ...rest),
            () => Effect.zipRight(Deferred.succeed(granted, undefined), Deferred.await(go))
          )
      }
      const scope = yield* Scope.make()
      yield* Scope.extend(engineOn(gated, new RunLog(), "B"), scope)
      // another process announces a change of o1: B claims it in the background
      yield* announce(Order._tag, "o1")
      yield* Deferred.await(granted)
      expect(yield* claimOwner("o1")).toBe("B")
      // B closes; once its close has reached its background fibers (it has left the process's engines),
      // the claim's answer arrives
      const closed = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* eventuallyEffect(Effect.sync(() => enginesOf(gated).size), (n) => n === 0)
      yield* Deferred.succeed(go, undefined)
      yield* Fiber.join(closed)
      expect(yield* claimOwner("o1")).toBeNull()
      // the next engine resumes it at once (with the claim left to its lease, it waited ten minutes)
      const c = yield* engineOn(journalA, logA, "C")
      expect(yield* c.signal("o1", Approval, Exit.succeed(42))).toEqual({ stored: true })
      expect(yield* Effect.timeout(c.result("o1"), "20 seconds")).toEqual(Exit.succeed(42))
      expect(logA.ids()).toEqual(["prepare", "finish"])
    }).pipe(Effect.scoped), 40_000)
})
