/**
 * What the engine's modules share: its options, a workflow's compiled definition, the stored parent link,
 * the engine's clocks and the registry of the engines of this process.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as ParseResult from "effect/ParseResult"
import type * as Scope from "effect/Scope"
import { restartOnDefect } from "@effect-cluster/cluster/Supervise"
import type { Journal } from "../DurableExecutionJournal.js"
import type { WorkflowDefinition } from "../Workflow.js"
import type { ExitCodec } from "./codec.js"
import type { Engine } from "./engine.js"
import type { Ownership } from "./engineOwnership.js"
import { liveClock } from "./liveClock.js"

/** @internal */
export interface EngineOptions {
  readonly identity?: string | undefined
  readonly claimLease?: Duration.DurationInput | undefined
  readonly resumeOnStart?: boolean | undefined
  readonly maxBatch?: number | undefined
  readonly orphanCheckInterval?: Duration.DurationInput | undefined
  readonly resultPollInterval?: Duration.DurationInput | undefined
  readonly journalRetries?: number | undefined
  readonly shutdownGracePeriod?: Duration.DurationInput | undefined
  /**
   * False: the engine's scope does not close it to callers nor drain it (`closeGracefully`) by itself; its
   * maker registers that, after the finalizers that must still run during the grace period (the cluster
   * engine: following the pod's shards, so that an execution whose shard leaves stops at once).
   */
  readonly closesItself?: boolean | undefined
  readonly livenessCheckInterval?: Duration.DurationInput | undefined
  /**
   * Who decides which engine runs an execution (engineOwnership.ts): claims between engines (the default),
   * or the cluster's shard owner.
   */
  readonly ownership?: Ownership | undefined
}

/** @internal */
export interface Definition extends WorkflowDefinition {
  readonly codec: ExitCodec<any, any>
  readonly encodePayload: (message: any) => Either.Either<any, ParseResult.ParseIssue>
  readonly decodePayload: (json: unknown) => Either.Either<any, ParseResult.ParseIssue>
}

/** The parent link stored with a child execution. @internal */
export interface ParentLink {
  readonly workflow: string
  readonly executionId: string
  readonly signal: string
}

/** @internal */
export { liveClock } from "./liveClock.js"

/**
 * How long (live clock) a shutdown waits for the database: to give the claims up, to unregister the
 * engine, for a loop stuck in a query to stop. Past it the engine's scope closes anyway: its claims end at
 * their lease, as after a crash, and a loop still in a query is left to end when the query does.
 *
 * @internal
 */
export const shutdownBound = Duration.seconds(5)

/** How long (live clock) a shutdown waits for a loop to stop before it detaches it. @internal */
export const loopStopBound = Duration.seconds(1)

/**
 * Like `Effect.forkScoped`, but when the scope closes the fiber is interrupted and awaited for at most
 * `bound` (live clock; `loopStopBound` by default): a loop stuck in a query the database does not answer
 * (a locked table) is detached, with a warning, instead of holding the shutdown. @internal
 */
export const forkDetachable = <A, E>(
  what: string,
  effect: Effect.Effect<A, E>,
  bound: Duration.Duration = loopStopBound
): Effect.Effect<void, never, Scope.Scope> =>
  // (the fiber is made interruptible: forked inside the uninterruptible region it would inherit it, and
  // no interruption would ever stop it)
  Effect.uninterruptible(Effect.flatMap(Effect.forkDaemon(Effect.interruptible(effect)), (fiber) =>
    Effect.addFinalizer(() =>
      Effect.zipRight(
        Fiber.interruptFork(fiber),
        // (interruptible: a finalizer runs uninterruptibly, and the timeout must be able to stop the wait)
        Effect.withClock(Effect.timeout(Effect.interruptible(Fiber.await(fiber)), bound), liveClock).pipe(
          Effect.catchTag("TimeoutException", () =>
            Effect.logWarning(
              `the engine's ${what} did not stop within ${Duration.format(bound)} at shutdown (the journal ` +
                "does not answer); it is left to stop when the journal does"
            ))
        )
      )
    )))

/**
 * Forks a background loop of the engine that must not end (see `forkDetachable`): a defect or failure that
 * escapes it (a bug, a journal that throws) is logged as an error (`the engine's <what> stopped on an
 * unexpected error`) and the loop starts again (`Supervise.restartOnDefect` of @effect-cluster/cluster),
 * instead of the engine losing its timer or its renewals without a word. @internal
 */
export const forkSupervised = <E>(what: string, loop: Effect.Effect<never, E>): Effect.Effect<void, never, Scope.Scope> =>
  forkDetachable(what, restartOnDefect(`the engine's ${what}`, loop))

/**
 * The engine's monotonic clock, in milliseconds (the fiber's `Clock`, so TestClock drives it in tests).
 *
 * @internal
 */
export const monotonicMillis = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos / 1_000_000n))

/** The engines of this process, per journal (an inbox change is told to a live owner directly). @internal */
export const processEngines = new WeakMap<Journal, Set<Engine>>()

/** @internal */
export const enginesOf = (journal: Journal): ReadonlySet<Engine> => processEngines.get(journal) ?? new Set()

/** A stored parent link (JSON text of `ParentLink`, or null), or why it is not one. @internal */
export const parseParent = (text: string | null): Either.Either<ParentLink | null, string> => {
  if (text === null) return Either.right(null)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return Either.left(`not JSON (${String(error)})`)
  }
  const link = json as Partial<ParentLink> | null
  return typeof link === "object" && link !== null && typeof link.workflow === "string" &&
      typeof link.executionId === "string" && typeof link.signal === "string"
    ? Either.right({ workflow: link.workflow, executionId: link.executionId, signal: link.signal })
    : Either.left(`not a parent link: ${text.slice(0, 200)}`)
}

/** @internal */
export type StartResult =
  | { readonly _tag: "Running" }
  | { readonly _tag: "Finished"; readonly result: string }

/** @internal */
export const runningStart: StartResult = { _tag: "Running" }

/** @internal */
export const runningResult = Exit.succeed(runningStart)
