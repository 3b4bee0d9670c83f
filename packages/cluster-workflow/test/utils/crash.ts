/**
 * Crash simulation for tests: a journal that "loses power" at a chosen write, and a runner that starts
 * a fresh engine on the surviving journal after each crash.
 */
import { CrashableRuntime, DurableExecutionJournal, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import type { Workflow } from "@effect-cluster/cluster-workflow"
import { Effect, Exit, type Scope, TestClock } from "effect"
import type { JournalConnection } from "./journals.js"

type Journal = DurableExecutionJournal.Journal
type JournalWrite = DurableExecutionJournal.JournalWrite

/** Where to crash: before the batch that contains a matching write commits (it is dropped), or after. */
export interface CrashPoint {
  readonly when: (write: JournalWrite, index: number) => boolean
  readonly mode: "before" | "after"
}

/** Crash at the n-th committed batch (0-based): dropping it ("before"), or once it committed ("after"). */
export const atBatch = (n: number, mode: "before" | "after" = "before"): CrashPoint => {
  let batches = 0
  return {
    when: (_write, index) => index === 0 && batches++ === n,
    mode
  }
}

/** Crash when a write appends an event matching `kind` for step `stepId`. */
export const atEvent = (kind: string, stepId: string, mode: "before" | "after" = "before"): CrashPoint => ({
  when: (write) => write._tag === "Append" && write.events.some((e) => e.kind === kind && e.stepId === stepId),
  mode
})

/**
 * Wraps `inner`: at the crash point the runtime crashes; a dropped batch never reaches `inner`; every
 * later call hangs (a dead process answers nothing).
 */
export const crashingJournal = (inner: Journal, point: CrashPoint, crash: Effect.Effect<void>): Journal => {
  let crashed = false
  const dead = Effect.never
  const guard = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => (crashed ? dead : effect))
  return {
    ...inner,
    commit: (writes) =>
      Effect.suspend(() => {
        if (crashed) return dead
        const hit = writes.some((write, i) => point.when(write, i))
        if (!hit) return inner.commit(writes)
        crashed = true
        if (point.mode === "before") return Effect.zipRight(crash, dead)
        return Effect.flatMap(inner.commit(writes), () => Effect.zipRight(crash, dead))
      }),
    get: (key) => guard(inner.get(key)),
    events: (key, from) => guard(inner.events(key, from)),
    signals: (key) => guard(inner.signals(key)),
    claim: (...args) => guard(inner.claim(...args)),
    renew: (...args) => guard(inner.renew(...args)),
    signal: (...args) => guard(inner.signal(...args)),
    requestCancel: (...args) => guard(inner.requestCancel(...args)),
    resume: (...args) => guard(inner.resume(...args)),
    nextWakeAt: (...args) => guard(inner.nextWakeAt(...args)),
    dueTimers: (...args) => guard(inner.dueTimers(...args)),
    resumable: (...args) => guard(inner.resumable(...args)),
    list: (...args) => guard(inner.list(...args)),
    deleteCompleted: (...args) => guard(inner.deleteCompleted(...args))
  }
}

/**
 * Runs `use(engine)` on an engine over `inner` that crashes at `point`. Returns the exit of `use`, or
 * "crashed". The crashed engine's fibers stay frozen: no finalizer of theirs runs.
 */
export const runUntilCrash = <A, E, R>(
  inner: Journal & { readonly open?: Effect.Effect<JournalConnection, never, Scope.Scope> },
  workflow: Workflow.Workflow<any, R>,
  point: CrashPoint | undefined,
  use: (
    engine: WorkflowEngine.WorkflowEngine<any>,
    /** Runs an effect off the crashable scheduler; use it for TestClock.adjust, whose helper fibers must not freeze. */
    restore: <X, Y>(effect: Effect.Effect<X, Y>) => Effect.Effect<X, Y>
  ) => Effect.Effect<A, E>,
  options?: WorkflowEngine.EngineOptions
): Effect.Effect<Exit.Exit<A, E> | "crashed", never, R | Scope.Scope> =>
  Effect.gen(function*() {
    // Ends the TestClock's "time is not advancing" warning: its fiber would be forked on the crashable
    // scheduler and frozen by the crash, and the test could not shut the clock down.
    yield* TestClock.adjust(0)
    const runtime = yield* CrashableRuntime.make
    // each run is a new "process": on SQL, its own connection
    const connection = inner.open === undefined ? undefined : yield* inner.open
    const base = connection?.journal ?? inner
    const journal = point === undefined ? base : crashingJournal(base, point, runtime.crash)
    const exit = yield* runtime.run((restore) =>
      Effect.scoped(
        Effect.flatMap(WorkflowEngine.make(workflow, { identity: "test-engine", ...options }), (engine) =>
          Effect.exit(use(engine, restore)))
      ).pipe(Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal))
    ).pipe(Effect.either)
    if (exit._tag === "Left") {
      if (CrashableRuntime.isCrashableRuntimeCrashedError(exit.left)) {
        if (connection !== undefined) yield* connection.kill
        return "crashed" as const
      }
      return Exit.die(exit.left) as Exit.Exit<A, E>
    }
    return exit.right as Exit.Exit<A, E>
  }) as any
