/**
 * How callers await an execution's result: through the local execution when it runs in this engine, and
 * through the journal (read with backoff on the live clock) when it runs elsewhere or is suspended. A
 * caller is always answered: with the result, with the fault the execution is stuck on, or, once the
 * engine's scope has closed, with `EngineClosedError`.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type { ExecutionKey, ExecutionRow, Journal } from "../DurableExecutionJournal.js"
import { isTerminal, JournalError } from "../DurableExecutionJournal.js"
import type { PayloadDecodeError } from "../WorkflowError.js"
import { EngineClosedError, ExecutionNotFoundError } from "../WorkflowError.js"
import type { CodeFault } from "./faults.js"
import { stuckFault } from "./faults.js"
import { OneShot } from "./oneShot.js"
import { liveClock } from "./liveClock.js"

/** Why a caller's wait for a result failed. @internal */
export type ResultError = JournalError | PayloadDecodeError | CodeFault | EngineClosedError | ExecutionNotFoundError

/** What the results need of the engine. @internal */
export interface ResultSource {
  readonly journal: Journal
  readonly owner: string
  readonly pollEvery: number
  readonly isLive: (id: string) => boolean
  /** Stopped by a journal failure: the engine takes it back itself. */
  readonly isRetrying: (id: string) => boolean
  readonly claimAndLaunch: (key: ExecutionKey) => Effect.Effect<boolean, JournalError | PayloadDecodeError>
}


/**
 * How a caller waits. `interruptOnYield`: the 2024 `send` (and `WorkflowRuntime.attempt`) ends interrupted
 * when the execution suspends on `Workflow.yieldExecution`, as the 2024 attempt did; the other callers wait
 * on until it is resumed and finishes. @internal
 */
export interface AwaitOptions {
  readonly interruptOnYield?: boolean | undefined
}

/** @internal */
export const keyString = (key: ExecutionKey) => JSON.stringify([key.workflow, key.executionId])

/**
 * Retries `effect` while it fails with a retryable `JournalError` (a short database outage), with
 * exponential backoff on the live clock up to a second between tries, for as long as the caller waits:
 * the caller's own timeout (or interruption) ends it. @internal
 */
export const rideOutJournal = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.withClock(
    Effect.retry(effect, {
      schedule: Schedule.exponential("10 millis").pipe(Schedule.union(Schedule.spaced("1 second"))),
      while: (error) => error instanceof JournalError && error.retryable
    }),
    liveClock
  )

/**
 * What the execution's owner elsewhere answered a caller waiting for a result (the cluster engine): the
 * result it pushed, `Pending` (still running there after the owner's bound on one wait: ask again), or
 * `NotHere` (not running there, or the owner could not be asked: read the journal). @internal
 */
export type RemoteAnswer =
  | { readonly _tag: "Finished"; readonly result: string }
  | { readonly _tag: "Pending" }
  | { readonly _tag: "NotHere" }

/** Asks the owner of an execution to push its result (see `Results.remoteWait`). @internal */
export type RemoteWait = (key: ExecutionKey) => Effect.Effect<RemoteAnswer>

/** The callers awaiting one execution's result here. */
interface Waiter {
  readonly shot: OneShot<string | undefined, ResultError>
  callers: number
}

/** @internal */
export class Results {
  /**
   * Callers awaiting a result: completed with it, or with undefined when the execution left this engine.
   * An entry lives while a caller waits on it: the last caller to leave (answered by the journal,
   * interrupted, timed out) removes it, so awaiting executions run elsewhere leaves nothing behind.
   */
  private readonly waiters = new Map<string, Waiter>()
  private closed: EngineClosedError | undefined = undefined
  /**
   * Set by the cluster engine: a caller whose execution runs elsewhere asks its owner to push the result
   * rather than reading the journal again and again; the journal stays its fallback (the owner gone, the
   * execution suspended or moved, the message lost), read at each answer that is not the result.
   */
  remoteWait: RemoteWait | undefined = undefined

  constructor(private readonly source: ResultSource) {}

  /**
   * The owner's side of `remoteWait`: the result of an execution running here once it completes, within
   * `waitMillis` (`Pending` past it, on the live clock); `NotHere` at once when it does not run here, and
   * when it leaves this engine or cannot run (its callers learn why from the journal).
   */
  awaitHere(key: ExecutionKey, waitMillis: number): Effect.Effect<RemoteAnswer> {
    return Effect.suspend(() => {
      const id = keyString(key)
      if (this.closed !== undefined || !this.source.isLive(id)) return Effect.succeed(notHere)
      return this.awaitLocal(id).pipe(
        Effect.map((result): RemoteAnswer => result === undefined ? notHere : { _tag: "Finished", result }),
        Effect.orElseSucceed(() => notHere),
        Effect.timeoutTo({ duration: waitMillis, onTimeout: () => pending, onSuccess: (answer) => answer }),
        Effect.withClock(liveClock)
      )
    })
  }

  /** The execution completed here. */
  succeed(id: string, result: string) {
    const waiter = this.waiters.get(id)
    if (waiter !== undefined) {
      this.waiters.delete(id)
      waiter.shot.unsafeSucceed(result)
    }
  }

  /** The execution left this engine: its callers go on waiting through the journal. */
  release(id: string) {
    const waiter = this.waiters.get(id)
    if (waiter !== undefined) {
      this.waiters.delete(id)
      waiter.shot.unsafeSucceed(undefined)
    }
  }

  /** The execution cannot run (stuck, or its message does not decode): its callers learn why. */
  fail(id: string, error: ResultError) {
    const waiter = this.waiters.get(id)
    if (waiter !== undefined) {
      this.waiters.delete(id)
      waiter.shot.unsafeDone(Exit.fail(error))
    }
  }

  /** The engine's scope closed: every caller waiting, and every later one, fails with `error`. */
  close(error: EngineClosedError) {
    this.closed = error
    const waiters = Array.from(this.waiters.values())
    this.waiters.clear()
    for (const waiter of waiters) waiter.shot.unsafeDone(Exit.fail(error))
  }

  /** How many executions have callers waiting here (tests check that none is left behind). */
  get waiting(): number {
    return this.waiters.size
  }

  /** Whether the engine's scope has closed. */
  get closedError(): EngineClosedError | undefined {
    return this.closed
  }

  /**
   * Awaits an execution's encoded result: on the local completion while it runs here and, from the first
   * time it is not running here (elsewhere, suspended), also on one journal poller that lasts for the
   * rest of this caller's wait. Each time the execution leaves this engine the caller waits locally again
   * (it may come back), with the same poller: one poller per caller however often it suspends.
   */
  await(key: ExecutionKey, options?: AwaitOptions): Effect.Effect<string, ResultError> {
    return Effect.suspend(() => {
      if (this.closed !== undefined) return Effect.fail(this.closed)
      const id = keyString(key)
      // Running here (the common case): the local completion alone, with no race to set up.
      if (this.source.isLive(id)) {
        return Effect.flatMap(
          this.awaitLocal(id),
          (result) => result === undefined ? this.awaitWithPoller(key, id, options) : Effect.succeed(result)
        )
      }
      return this.awaitWithPoller(key, id, options)
    })
  }

  /** The wait once the execution has not been running here: local waits and one poller for the rest of it. */
  private awaitWithPoller(key: ExecutionKey, id: string, options?: AwaitOptions): Effect.Effect<string, ResultError> {
    return Effect.suspend(() => {
      let polling = false
      const startPolling = Deferred.unsafeMake<void>(FiberId.none)
      const local: Effect.Effect<string, ResultError> = Effect.gen(this, function*() {
        while (true) {
          if (this.closed !== undefined) return yield* Effect.fail(this.closed)
          if (!polling && !this.source.isLive(id)) {
            polling = true
            yield* Deferred.succeed(startPolling, undefined)
          }
          const result = yield* this.awaitLocal(id)
          if (result !== undefined) return result
        }
      })
      return Effect.raceFirst(local, Effect.zipRight(Deferred.await(startPolling), this.poll(key, options)))
    })
  }

  /** One local wait: the result, or undefined when the execution left this engine. */
  private awaitLocal(id: string): Effect.Effect<string | undefined, ResultError> {
    return Effect.suspend(() => {
      let waiter = this.waiters.get(id)
      if (waiter === undefined) {
        waiter = { shot: new OneShot(), callers: 0 }
        this.waiters.set(id, waiter)
      }
      const entry = waiter
      entry.callers++
      return Effect.ensuring(
        entry.shot.await,
        Effect.sync(() => {
          entry.callers--
          if (entry.callers === 0 && this.waiters.get(id) === entry) this.waiters.delete(id)
        })
      )
    })
  }

  /**
   * The result, or the fault the execution is stuck on, if the row says so. A row that is gone (deleted by
   * retention or by hand while the caller waited) ends the wait with `ExecutionNotFoundError`: it would
   * never change again.
   */
  private settled(
    key: ExecutionKey,
    row: Option.Option<ExecutionRow>,
    options?: AwaitOptions
  ): Effect.Effect<string, CodeFault | ExecutionNotFoundError> | undefined {
    if (Option.isNone(row)) return Effect.fail(new ExecutionNotFoundError({ executionId: key.executionId }))
    if (isTerminal(row.value.status) && row.value.result !== null) return Effect.succeed(row.value.result)
    if (options?.interruptOnYield === true && row.value.status === "suspended" && row.value.suspendedOn === "yield") {
      return Effect.interrupt
    }
    const fault = row.value.status === "suspended" ? stuckFault(row.value.suspendedOn) : undefined
    return fault === undefined ? undefined : Effect.fail(fault)
  }

  private poll(key: ExecutionKey, options?: AwaitOptions): Effect.Effect<string, ResultError> {
    const { journal, owner, pollEvery } = this.source
    const id = keyString(key)
    const remote = this.remoteWait
    return Effect.gen(this, function*() {
      // Run elsewhere: its owner pushes the result (it has just been started, the common case); else, or
      // when it finished just before this caller asked (it is no longer live), the journal has it.
      let pushed = remote === undefined ? notHere : yield* remote(key)
      if (pushed._tag === "Finished") return pushed.result
      let row = yield* rideOutJournal(journal.get(key))
      const first = this.settled(key, row, options)
      if (first !== undefined) return yield* first
      // Short workflows run elsewhere (another pod) finish in tens of milliseconds: look again soon, then
      // less and less often (10 ms doubling up to `pollEvery`). While the row says it runs, its owner is
      // asked again first: a wait it bounded (`Pending`) needs no pause before the next.
      let delay = Math.min(10, pollEvery)
      while (true) {
        pushed = remote !== undefined && Option.isSome(row) && row.value.status === "running"
          ? yield* remote(key)
          : notHere
        if (pushed._tag === "Finished") return pushed.result
        if (pushed._tag === "NotHere") yield* Effect.withClock(Effect.sleep(delay), liveClock)
        row = yield* rideOutJournal(journal.get(key))
        const settled = this.settled(key, row, options)
        if (settled !== undefined) return yield* settled
        if (
          Option.isSome(row) && row.value.status === "running" && !this.source.isLive(id) &&
          !this.source.isRetrying(id)
        ) {
          // Resume an execution abandoned by its engine (claim expired) instead of waiting forever.
          const now = yield* Clock.currentTimeMillis
          const own = row.value.claimOwner === owner
          if (own || row.value.claimUntil === null || row.value.claimUntil < now) {
            yield* rideOutJournal(this.source.claimAndLaunch(key))
          }
        }
        if (pushed._tag === "NotHere") delay = Math.min(delay * 2, pollEvery)
      }
    })
  }
}

const notHere: RemoteAnswer = { _tag: "NotHere" }
const pending: RemoteAnswer = { _tag: "Pending" }

/** The default wait between journal reads of a result. @internal */
export const defaultPollEvery = (interval: Duration.DurationInput | undefined) =>
  Duration.toMillis(interval ?? "1 second")
