/**
 * Group commit: one writer fiber per engine drains a queue of journal writes; each drain is one
 * `Journal.commit` (one transaction on SQL journals), and each caller awaits its own deferred.
 *
 * An idle engine commits at once (the batch is whatever is queued, often one write), so a single
 * workflow's latency does not suffer; under load one flush serves many executions. Writes of one
 * execution are committed in submission order, so a write that is committed implies every earlier write
 * of that execution is too (the engine pipelines results on this).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Journal, JournalWrite, WriteResult } from "../DurableExecutionJournal.js"
import { JournalError } from "../DurableExecutionJournal.js"
import { OneShot } from "./oneShot.js"

/**
 * The execution a write belongs to. Once broken (a write of it failed or was fenced), its later writes
 * are dropped instead of committed, so nothing after a lost write becomes durable.
 *
 * @internal
 */
export interface WriteOwner {
  broken: boolean
  readonly onBroken: (result: WriteResult | JournalError) => void
}

interface Pending {
  readonly write: JournalWrite
  readonly owner: WriteOwner | undefined
  /** Undefined when nobody awaits the result (a pipelined write: its owner hears of a failure). */
  readonly result: OneShot<WriteResult, JournalError> | undefined
}

/** @internal */
export interface GroupCommitOptions {
  /** Most writes in one commit. */
  readonly maxBatch: number
  /** Attempts for a batch whose commit failed with a retryable error (live clock backoff). */
  readonly retries: number
  readonly retryBase: Duration.DurationInput
}

/** @internal */
export interface Committer {
  readonly submit: (write: JournalWrite, owner?: WriteOwner) => OneShot<WriteResult, JournalError>
  /**
   * Submits a write whose result nobody awaits (pipelined): a failed or fenced write breaks its owner,
   * which is told through `onBroken`.
   */
  readonly submitPipelined: (write: JournalWrite, owner: WriteOwner) => void
  /** Batches committed so far (for tests and metrics). */
  readonly commits: () => number
}

const liveClock = Clock.make()

const isFailure = (result: WriteResult) => result._tag === "Fenced"

/**
 * Resolves a batch whose commit outcome is unknown (the connection dropped during COMMIT) by reading
 * what is in the journal, never by writing twice: an Append whose first event is present committed.
 */
const resolveByReading = (journal: Journal, batch: ReadonlyArray<Pending>) =>
  Effect.forEach(batch, (pending): Effect.Effect<Option.Option<WriteResult>, JournalError> => {
    const write = pending.write
    switch (write._tag) {
      case "Start":
        return Effect.map(journal.get(write.key), (row) =>
          Option.flatMap(row, (row) =>
            row.claimOwner === write.owner && row.claimEpoch === 1 && row.payloadHash === write.payloadHash
              ? Option.some<WriteResult>({ _tag: "Created", epoch: 1 })
              : Option.none()))
      case "Append": {
        const first = write.events[0]
        if (first === undefined) return Effect.succeed(Option.none())
        return Effect.map(journal.events(write.key, first.sequence), (events) =>
          events.length > 0 && events[0]!.sequence === first.sequence && events[0]!.kind === first.kind &&
            events[0]!.stepId === first.stepId
            ? Option.some<WriteResult>({ _tag: "Ok" })
            : Option.none())
      }
      case "Suspend":
        return Effect.map(journal.get(write.key), (row) =>
          Option.flatMap(row, (row) =>
            row.status === "suspended" && row.claimEpoch === write.fence.epoch && row.claimOwner === null
              ? Option.some<WriteResult>({ _tag: "Ok" })
              : Option.none()))
    }
  })

/** @internal */
export const make = (
  journal: Journal,
  options: GroupCommitOptions
): Effect.Effect<Committer, never, Scope.Scope> =>
  Effect.gen(function*() {
    // A plain array and one waiter: cheaper than a Queue on this hot path.
    let queue: Array<Pending> = []
    let wake: ((effect: Effect.Effect<void>) => void) | undefined
    const woken = Effect.void
    const waitForWrites = Effect.async<void>((resume) => {
      if (queue.length > 0) return resume(woken)
      wake = resume
      return Effect.sync(() => {
        if (wake === resume) wake = undefined
      })
    })
    const takeBatch: Effect.Effect<Array<Pending>> = Effect.suspend(() => {
      if (queue.length > 0) {
        const taken = queue.length <= options.maxBatch ? queue : queue.slice(0, options.maxBatch)
        queue = queue.length <= options.maxBatch ? [] : queue.slice(options.maxBatch)
        return Effect.succeed(taken)
      }
      return Effect.flatMap(waitForWrites, () => takeBatch)
    })
    let commits = 0

    const commitBatch = (batch: ReadonlyArray<Pending>): Effect.Effect<ReadonlyArray<WriteResult>, JournalError> => {
      let attempt = 0
      let unknownOutcome = false
      const loop: Effect.Effect<ReadonlyArray<WriteResult>, JournalError> = Effect.suspend(() => {
        const attemptCommit = unknownOutcome
          ? Effect.flatMap(resolveByReading(journal, batch), (resolved) => {
            const remaining = batch.filter((_, i) => Option.isNone(resolved[i]!))
            if (remaining.length === 0) return Effect.succeed(resolved.map((r) => Option.getOrThrow(r)))
            return Effect.map(journal.commit(remaining.map((p) => p.write)), (results) => {
              let j = 0
              return resolved.map((r) => Option.isSome(r) ? r.value : results[j++]!)
            })
          })
          : journal.commit(batch.map((p) => p.write))
        return Effect.catchAll(attemptCommit, (error) => {
          if (!error.retryable || attempt >= options.retries) return Effect.fail(error)
          attempt++
          unknownOutcome = true
          const delay = Duration.times(Duration.decode(options.retryBase), 2 ** Math.min(attempt - 1, 8))
          return Effect.zipRight(Effect.withClock(Effect.sleep(delay), liveClock), loop)
        })
      })
      return loop
    }

    const complete = (batch: ReadonlyArray<Pending>, results: ReadonlyArray<WriteResult>) => {
      for (let i = 0; i < batch.length; i++) {
        const pending = batch[i]!
        const result = results[i]!
        if (pending.owner !== undefined && isFailure(result) && !pending.owner.broken) {
          pending.owner.broken = true
          pending.owner.onBroken(result)
        }
        pending.result?.unsafeDone(Exit.succeed(result))
      }
    }

    const writer = Effect.gen(function*() {
      while (true) {
        const taken = yield* takeBatch
        const batch: Array<Pending> = []
        for (const pending of taken) {
          if (pending.owner?.broken) {
            pending.result?.unsafeDone(Exit.succeed<WriteResult>({ _tag: "Fenced" }))
          } else {
            batch.push(pending)
          }
        }
        if (batch.length === 0) continue
        const exit = yield* Effect.exit(commitBatch(batch))
        commits++
        if (Exit.isSuccess(exit)) {
          complete(batch, exit.value)
        } else {
          const error = Option.getOrElse(
            Cause.failureOption(exit.cause),
            () => new JournalError({ operation: "commit", message: Cause.pretty(exit.cause), retryable: false })
          )
          for (const pending of batch) {
            if (pending.owner !== undefined && !pending.owner.broken) {
              pending.owner.broken = true
              pending.owner.onBroken(error)
            }
            pending.result?.unsafeDone(Exit.fail(error))
          }
        }
      }
    }).pipe(Effect.annotateLogs({ package: "@effect-cluster/cluster-workflow", module: "GroupCommit" }))

    yield* Effect.forkScoped(Effect.interruptible(writer))

    const enqueue = (pending: Pending) => {
      queue.push(pending)
      const waiter = wake
      if (waiter !== undefined) {
        wake = undefined
        waiter(woken)
      }
    }

    return {
      submit: (write, owner) => {
        const result = new OneShot<WriteResult, JournalError>()
        enqueue({ write, owner, result })
        return result
      },
      submitPipelined: (write, owner) => enqueue({ write, owner, result: undefined }),
      commits: () => commits
    }
  })
