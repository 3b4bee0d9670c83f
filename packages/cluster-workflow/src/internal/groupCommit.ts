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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { EventRow, ExecutionRow, Journal, JournalWrite, WriteResult } from "../DurableExecutionJournal.js"
import { isTerminal, JournalError } from "../DurableExecutionJournal.js"
import { samePayload } from "./codec.js"
import { OneShot } from "./oneShot.js"
import { liveClock } from "./liveClock.js"

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
  /**
   * Holds back `owner`'s writes for a commit of its own outside the committer (a transactional activity's
   * transaction): waits until none of its writes is being committed, then keeps its queued and later
   * writes out of the batches until `release`. The caller commits the held writes before its own write
   * (`take`), in its transaction, so that its write is not ordered before the execution's earlier writes.
   * A second holder of the same owner waits for the first to release. Interruptible while it waits; an
   * interrupted hold holds nothing.
   */
  readonly hold: (owner: WriteOwner) => Effect.Effect<Held>
  /** Batches committed so far (for tests and metrics). */
  readonly commits: () => number
}

/**
 * An owner's writes held back from the committer (see `Committer.hold`).
 *
 * @internal
 */
export interface Held {
  /**
   * Takes the writes held so far, in submission order, to commit ahead of the caller's own write; the
   * writes submitted afterwards stay held until `release`.
   */
  readonly take: () => ReadonlyArray<JournalWrite>
  /**
   * Settles the taken writes with the outcome of the commit that carried them (one result each, or the
   * error that failed it; `undefined` when nothing was committed) and hands the writes still held back to
   * the committer.
   */
  readonly release: (outcome: Exit.Exit<ReadonlyArray<WriteResult>, JournalError> | undefined) => Effect.Effect<void>
}


/** A commit that failed for good; `unknownOutcome` when an earlier attempt of it may have committed. */
interface CommitFailure {
  readonly error: JournalError
  readonly unknownOutcome: true | undefined
}

/** The indexes of `writes` per execution, each in order, executions in order of first appearance. */
const byExecution = (writes: ReadonlyArray<JournalWrite>): Array<Array<number>> => {
  const groups = new Map<string, Array<number>>()
  writes.forEach((write, i) => {
    const id = write.key.workflow + "\u0000" + write.key.executionId
    const group = groups.get(id)
    if (group === undefined) groups.set(id, [i])
    else group.push(i)
  })
  return Array.from(groups.values())
}

const isFailure = (result: WriteResult) => result._tag === "Fenced"

/**
 * Whether an Append is in the journal: the execution is still at the write's claim epoch (a claim by any
 * engine increments it, so no other engine wrote since) and every event of the write is at its sequence
 * with the same kind, step and attempt. An engine that took the execution over and wrote the same step
 * (a later attempt, or the same event under its own epoch) is not mistaken for this write.
 */
const appendCommitted = (
  write: Extract<JournalWrite, { _tag: "Append" }>,
  row: Option.Option<ExecutionRow>,
  events: ReadonlyArray<EventRow>
): boolean =>
  Option.isSome(row) && row.value.claimEpoch === write.fence.epoch &&
  (row.value.claimOwner === write.fence.owner || row.value.claimOwner === null) &&
  write.events.every((expected, i) => {
    const found = events[i]
    return found !== undefined && found.sequence === expected.sequence && found.kind === expected.kind &&
      found.stepKind === expected.stepKind && found.stepScope === expected.stepScope &&
      found.stepId === expected.stepId && found.attempt === expected.attempt
  })

/**
 * Resolves a batch whose commit outcome is unknown (the connection dropped during COMMIT) by reading
 * what is in the journal, never by writing twice (see `appendCommitted`). An unresolved write is
 * committed again, which fences it if another engine holds the execution now.
 *
 * @internal
 */
export const resolveByReading = (journal: Journal, writes: ReadonlyArray<JournalWrite>) =>
  Effect.forEach(writes, (write): Effect.Effect<Option.Option<WriteResult>, JournalError> => {
    switch (write._tag) {
      case "Start":
        return Effect.map(journal.get(write.key), (row) =>
          Option.flatMap(row, (row) =>
            row.claimOwner === write.owner && row.claimEpoch === 1 &&
              samePayload(row, write.payload, write.payloadHash)
              ? Option.some<WriteResult>({ _tag: "Created", epoch: 1 })
              : Option.none()))
      case "Append": {
        const first = write.events[0]
        if (first === undefined) return Effect.succeed(Option.none())
        return Effect.map(
          // events first: a row still at the write's epoch afterwards proves no other engine wrote them
          Effect.zip(journal.events(write.key, first.sequence), journal.get(write.key)),
          ([events, row]) =>
            appendCommitted(write, row, events) ? Option.some<WriteResult>({ _tag: "Ok" }) : Option.none()
        )
      }
      case "Suspend":
        return Effect.map(journal.get(write.key), (row) =>
          Option.flatMap(row, (row) =>
            row.status === "suspended" && row.claimEpoch === write.fence.epoch && row.claimOwner === null
              ? Option.some<WriteResult>({ _tag: "Ok" })
              : Option.none()))
    }
  })

/**
 * Merges consecutive Appends of one execution under the same fence into one Append (their events in
 * order, their row updates applied in order), so a step's result and the next step's attempt marker are
 * one write: one statement on a SQL journal instead of two rounds in a transaction. Writes of different
 * executions are independent; each execution's writes keep their order. Returns the writes to commit and,
 * per pending write, the index of the write that carries it.
 */
const mergeAppends = (batch: ReadonlyArray<Pending>): { writes: Array<JournalWrite>; carrier: Array<number> } => {
  const writes: Array<JournalWrite> = []
  const carrier: Array<number> = new Array(batch.length)
  // per execution: the index in `writes` of its last write when that write is an Append open to merging
  let open: Map<string, number> | undefined
  for (let i = 0; i < batch.length; i++) {
    const write = batch[i]!.write
    const id = write.key.workflow + "\u0000" + write.key.executionId
    if (write._tag === "Append") {
      const at = open?.get(id)
      if (at !== undefined) {
        const previous = writes[at] as Extract<JournalWrite, { _tag: "Append" }>
        if (previous.fence.owner === write.fence.owner && previous.fence.epoch === write.fence.epoch) {
          writes[at] = {
            _tag: "Append",
            key: previous.key,
            fence: previous.fence,
            events: previous.events.concat(write.events),
            update: previous.update === undefined
              ? write.update
              : write.update === undefined
              ? previous.update
              : { ...previous.update, ...write.update },
            // (only a completion delivers, and nothing merges after it)
            deliver: write.deliver ?? previous.deliver,
            // the time of the last write that changed the row (Appends without an update leave it as it is)
            now: write.update !== undefined || previous.update === undefined ? write.now : previous.now
          }
          carrier[i] = at
          if (write.update?.status !== undefined && isTerminal(write.update.status)) open!.delete(id)
          continue
        }
      }
      carrier[i] = writes.length
      writes.push(write)
      // nothing merges after a terminal update (a later write of a finished execution is refused)
      if (write.update?.status !== undefined && isTerminal(write.update.status)) open?.delete(id)
      else (open ?? (open = new Map())).set(id, carrier[i]!)
    } else {
      carrier[i] = writes.length
      writes.push(write)
      open?.delete(id)
    }
  }
  return { writes, carrier }
}

/** @internal */
export const make = (
  journal: Journal,
  options: GroupCommitOptions
): Effect.Effect<Committer, never, Scope.Scope> =>
  Effect.gen(function*() {
    // A plain array: cheaper than a Queue on this hot path.
    let queue: Array<Pending> = []
    /** A drain is committing: it takes every write queued meanwhile before it stops. */
    let draining = false
    /**
     * The last batch released several waiting callers: the writer lets ready fibers run before it drains,
     * so executions in lockstep share commits instead of the first of them committing alone.
     */
    let loaded = false
    /** Queued writes somebody awaits. */
    let awaitedQueued = 0
    let commits = 0
    /** The writes held back per owner (see `hold`): not in `queue`, not committed by the writer. */
    const held = new Map<WriteOwner, Array<Pending>>()
    /** The batch being committed, and a signal for when it is done (see `hold`). */
    let inFlight: ReadonlyArray<Pending> = []
    let batchDone: OneShot<void> | undefined

    /** One result per pending write: its outcome, or the error that failed it alone (see `isolate`). */
    const commitBatch = (
      batch: ReadonlyArray<Pending>
    ): Effect.Effect<ReadonlyArray<WriteResult | JournalError>, JournalError> => {
      const { carrier, writes } = mergeAppends(batch)
      return Effect.map(commitIsolated(writes), (results) => carrier.map((at) => results[at]!))
    }

    /**
     * Commits `writes`; when the database refuses the batch for good (a non-retryable error: one write's
     * value it cannot store, a constraint...), commits each execution's writes on their own, so that only
     * the offending execution's writes fail (DESIGN.md section 8: one caller's conflict must not fail the
     * others). Each execution's writes stay in order, in one commit.
     */
    const commitIsolated = (
      writes: ReadonlyArray<JournalWrite>
    ): Effect.Effect<ReadonlyArray<WriteResult | JournalError>, JournalError> =>
      Effect.catchAll(
        commitWrites(writes, false),
        (error): Effect.Effect<ReadonlyArray<WriteResult | JournalError>, JournalError> => {
          const groups = byExecution(writes)
          // a database that stays down fails every write alike: nothing to isolate
          if (error.error.retryable || groups.length <= 1) return Effect.fail(error.error)
          const results: Array<WriteResult | JournalError> = new Array(writes.length)
          return Effect.as(
            Effect.forEach(groups, (group) =>
              Effect.match(commitWrites(group.map((i) => writes[i]!), error.unknownOutcome === true), {
                onFailure: (failure) => {
                  for (const i of group) results[i] = failure.error
                },
                onSuccess: (groupResults) => group.forEach((i, j) => results[i] = groupResults[j]!)
              }), { discard: true }),
            results
          )
        }
      )

    /**
     * Commits `writes`, retrying retryable failures with backoff. A retried commit's earlier attempt may
     * have committed (its outcome is unknown): the retry resolves that by reading, never by writing twice.
     */
    const commitWrites = (
      writes: ReadonlyArray<JournalWrite>,
      outcomeUnknown: boolean
    ): Effect.Effect<ReadonlyArray<WriteResult>, CommitFailure> => {
      let attempt = 0
      let unknownOutcome = outcomeUnknown
      const loop: Effect.Effect<ReadonlyArray<WriteResult>, CommitFailure> = Effect.suspend(() => {
        const attemptCommit = unknownOutcome
          ? Effect.flatMap(resolveByReading(journal, writes), (resolved) => {
            const remaining = writes.filter((_, i) => Option.isNone(resolved[i]!))
            if (remaining.length === 0) return Effect.succeed(resolved.map((r) => Option.getOrThrow(r)))
            return Effect.map(journal.commit(remaining), (results) => {
              let j = 0
              return resolved.map((r) => Option.isSome(r) ? r.value : results[j++]!)
            })
          })
          : journal.commit(writes)
        return Effect.catchAll(attemptCommit, (error) => {
          if (!error.retryable || attempt >= options.retries) {
            return Effect.fail<CommitFailure>({ error, unknownOutcome: unknownOutcome ? true : undefined })
          }
          attempt++
          unknownOutcome = true
          const delay = Duration.times(Duration.decode(options.retryBase), 2 ** Math.min(attempt - 1, 8))
          return Effect.zipRight(Effect.withClock(Effect.sleep(delay), liveClock), loop)
        })
      })
      return loop
    }

    const complete = (batch: ReadonlyArray<Pending>, results: ReadonlyArray<WriteResult | JournalError>) => {
      for (let i = 0; i < batch.length; i++) {
        const pending = batch[i]!
        const result = results[i]!
        if (result instanceof JournalError) {
          failOne(pending, result)
          continue
        }
        if (pending.owner !== undefined && isFailure(result) && !pending.owner.broken) {
          pending.owner.broken = true
          pending.owner.onBroken(result)
        }
        pending.result?.unsafeDone(Exit.succeed(result))
      }
    }

    const fail = (batch: ReadonlyArray<Pending>, cause: Cause.Cause<JournalError>) => {
      const error = Option.getOrElse(
        Cause.failureOption(cause),
        () => new JournalError({ operation: "commit", message: Cause.pretty(cause), retryable: false })
      )
      for (const pending of batch) failOne(pending, error)
    }

    const failOne = (pending: Pending, error: JournalError) => {
      if (pending.owner !== undefined && !pending.owner.broken) {
        pending.owner.broken = true
        pending.owner.onBroken(error)
      }
      pending.result?.unsafeDone(Exit.fail(error))
    }

    /** Yields (at most 4 times) until `expected` awaited writes are queued. */
    const gather = (expected: number, rounds: number): Effect.Effect<void> =>
      awaitedQueued >= expected || rounds >= 4
        ? Effect.void
        : Effect.flatMap(Effect.yieldNow(), () => gather(expected, rounds + 1))

    /** Commits batches until the queue is empty; one drain at a time (`draining`), so each execution's
     * writes commit in submission order. */
    const drain: Effect.Effect<void> = Effect.suspend(function loop(): Effect.Effect<void> {
      if (queue.length === 0) {
        draining = false
        return Effect.void
      }
      const taken = queue.length <= options.maxBatch ? queue : queue.slice(0, options.maxBatch)
      queue = queue.length <= options.maxBatch ? [] : queue.slice(options.maxBatch)
      const batch: Array<Pending> = []
      for (const pending of taken) {
        if (pending.result !== undefined) awaitedQueued--
        if (pending.owner?.broken) pending.result?.unsafeDone(Exit.succeed<WriteResult>({ _tag: "Fenced" }))
        else batch.push(pending)
      }
      if (batch.length === 0) return loop()
      inFlight = batch
      return Effect.flatMap(Effect.exit(commitBatch(batch)), (exit) => {
        commits++
        inFlight = []
        if (batchDone !== undefined) {
          batchDone.unsafeSucceed(undefined)
          batchDone = undefined
        }
        if (Exit.isSuccess(exit)) complete(batch, exit.value)
        else fail(batch, exit.cause)
        // Several callers were waiting: the engine is loaded (see the writer below).
        let waiters = 0
        for (let i = 0; i < batch.length; i++) if (batch[i]!.result !== undefined) waiters++
        loaded = waiters >= 2
        // The writes queued during this commit wait for the released callers' next awaited writes (a few
        // scheduler rounds: a caller may be resumed through another fiber), so they share the next commit.
        return loaded ? Effect.zipRight(gather(Math.min(waiters, options.maxBatch), 0), Effect.suspend(loop)) : loop()
      })
    }).pipe(Effect.onInterrupt(() =>
      Effect.sync(() => {
        draining = false
      })
    ))

    // One writer fiber drains the queue, woken by the first write on an idle committer. When it runs with
    // only pipelined writes queued (a step's result, nobody awaits it), or when loaded, it lets the fibers
    // that are ready run first, so that the write shares its commit with the awaited write its execution
    // submits next (the next attempt marker, the workflow's completion, a suspension) instead of committing
    // alone just before it. With an awaited write queued on an idle engine it commits at once.
    // (A fiber per drain, started at once by the awaited write, saves that write a scheduler hop, but
    // creating it costs more than the hop: measured, not assumed.)
    let wake: ((effect: Effect.Effect<void>) => void) | undefined
    const woken = Effect.void
    const waitForWrites = Effect.async<void>((resume) => {
      if (queue.length > 0 && !draining) return resume(woken)
      wake = resume
      return Effect.sync(() => {
        if (wake === resume) wake = undefined
      })
    })
    const startDrain = Effect.suspend(() => {
      if (draining || queue.length === 0) return Effect.void
      draining = true
      return drain
    })
    const writer: Effect.Effect<never> = Effect.forever(
      Effect.flatMap(waitForWrites, () =>
        // (an awaited write submitted after the wake-up, before the writer ran, counts too)
        loaded || awaitedQueued === 0 ? Effect.zipRight(Effect.yieldNow(), startDrain) : startDrain
      )
    ).pipe(Effect.annotateLogs({ package: "@effect-cluster/cluster-workflow", module: "GroupCommit" }))
    yield* Effect.forkScoped(Effect.interruptible(writer))

    const wakeWriter = () => {
      const waiter = wake
      if (waiter !== undefined && !draining) {
        wake = undefined
        waiter(woken)
      }
    }

    const enqueue = (pending: Pending) => {
      const heldWrites = pending.owner === undefined ? undefined : held.get(pending.owner)
      if (heldWrites !== undefined) {
        heldWrites.push(pending)
        return
      }
      queue.push(pending)
      if (pending.result !== undefined) awaitedQueued++
      wakeWriter()
    }

    /** Settles writes committed (or failed) outside the writer. */
    const settle = (pendings: ReadonlyArray<Pending>, outcome: Exit.Exit<ReadonlyArray<WriteResult>, JournalError>) => {
      if (Exit.isSuccess(outcome)) complete(pendings, outcome.value)
      else fail(pendings, outcome.cause)
    }

    /** Signals per held owner, resolved when its holder releases (a second holder waits for it). */
    const released = new Map<WriteOwner, OneShot<void>>()

    const hold = (owner: WriteOwner): Effect.Effect<Held> =>
      Effect.suspend(() => {
        // One holder per execution at a time: two transactions of one execution would race for sequences.
        const previous = released.get(owner)
        if (previous !== undefined) return Effect.zipRight(previous.await, hold(owner))
        const own: Array<Pending> = []
        queue = queue.filter((pending) => {
          if (pending.owner !== owner) return true
          if (pending.result !== undefined) awaitedQueued--
          own.push(pending)
          return false
        })
        held.set(owner, own)
        const signal = new OneShot<void>()
        released.set(owner, signal)
        let taken: ReadonlyArray<Pending> = []
        const release = (outcome: Exit.Exit<ReadonlyArray<WriteResult>, JournalError> | undefined) => {
          if (released.get(owner) !== signal) return
          const rest = held.get(owner) ?? []
          held.delete(owner)
          released.delete(owner)
          if (outcome !== undefined) settle(taken, outcome)
          else rest.unshift(...taken)
          taken = []
          for (const pending of rest) enqueue(pending)
          signal.unsafeSucceed(undefined)
        }
        const handle: Held = {
          take: () => {
            taken = held.get(owner) ?? []
            held.set(owner, [])
            return taken.map((pending) => pending.write)
          },
          release: (outcome) => Effect.sync(() => release(outcome))
        }
        // Its writes taken by a drain before the hold commit first; later drains cannot take any.
        if (!inFlight.some((pending) => pending.owner === owner)) return Effect.succeed(handle)
        const done = batchDone ?? (batchDone = new OneShot<void>())
        return Effect.as(done.await, handle).pipe(Effect.onInterrupt(() => Effect.sync(() => release(undefined))))
      })

    return {
      submit: (write, owner) => {
        const result = new OneShot<WriteResult, JournalError>()
        enqueue({ write, owner, result })
        return result
      },
      submitPipelined: (write, owner) => enqueue({ write, owner, result: undefined }),
      hold,
      commits: () => commits
    }
  })
