/**
 * Helpers to drive engines in tests without sleeping.
 */
import type { Message } from "@effect-cluster/cluster"
import type { Workflow } from "@effect-cluster/cluster-workflow"
import { DurableExecutionJournal, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { Effect } from "effect"

type Journal = DurableExecutionJournal.Journal

/**
 * One turn of the event loop (setImmediate), so I/O of SQL journals completes while a test waits for a
 * condition. Not a sleep: no timer is involved and nothing depends on how long it takes.
 */
export const ioTurn = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const pause = (i: number) => (i % 8 === 7 ? ioTurn : Effect.yieldNow())

/** Yields until the execution's status has the given tag (bounded, so a bug fails instead of hanging). */
export const awaitStatus = (
  engine: WorkflowEngine.WorkflowEngine<any>,
  executionId: string,
  tag: WorkflowEngine.ExecutionState<any, any>["_tag"]
) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000_000; i++) {
      const status = yield* engine.status(executionId)
      if (status._tag === tag) return status
      yield* pause(i)
    }
    return yield* Effect.dieMessage(`execution ${executionId} never reached ${tag}`)
  })

/** Yields until `predicate` holds (bounded). */
export const eventually = (predicate: () => boolean, what = "condition") =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000_000; i++) {
      if (predicate()) return
      yield* pause(i)
    }
    return yield* Effect.dieMessage(`${what} never held`)
  })

/** Counts calls per journal method. */
export const countingJournal = (inner: Journal) => {
  const calls: Record<string, number> = {}
  const journal = Object.fromEntries(
    Object.entries(inner).map(([name, value]) => [
      name,
      typeof value === "function"
        ? (...args: Array<any>) => {
          calls[name] = (calls[name] ?? 0) + 1
          return (value as any)(...args)
        }
        : value
    ])
  ) as unknown as Journal
  return { journal, calls }
}

/** Yields until `effect`'s value satisfies `predicate` (bounded). */
export const eventuallyEffect = <A, E, R>(effect: Effect.Effect<A, E, R>, predicate: (a: A) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000_000; i++) {
      if (predicate(yield* effect)) return
      yield* pause(i)
    }
    return yield* Effect.dieMessage("condition never held")
  })

/**
 * Runs `body` with an engine of `workflow` on `journal` (`WorkflowEngine.make`, `resumeOnStart: false`
 * unless `options` say otherwise), in a scope of its own: the engine stops when `body` ends.
 */
export const withEngineOn = <T extends Message.Message.Any, A, E>(
  journal: Journal,
  workflow: Workflow.Workflow<T, never>,
  body: (engine: WorkflowEngine.WorkflowEngine<T>) => Effect.Effect<A, E>,
  options?: WorkflowEngine.EngineOptions
): Effect.Effect<A, E> =>
  Effect.flatMap(Effect.orDie(WorkflowEngine.make(workflow, { resumeOnStart: false, ...options })), body).pipe(
    Effect.scoped,
    Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
  )
