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
  /** When (live clock) the drain first held the write back (see `Journal.holdBack`). */
  heldSince?: number
}

/** The longest the drain holds a write back (`Journal.holdBack`); then it is committed anyway. */
const holdBackMillis = 5_000
/** How long (live clock) a drain with every queued write held back waits before it looks again. */
const holdBackLookMillis = 50

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
  /**
   * Resolves once none of `owner`'s writes is queued, held or being committed: each was committed (with
   * the committer's retries, and after any `Journal.holdBack`) or answered. Interruptible.
   */
  readonly settled: (owner: WriteOwner) => Effect.Effect<void>
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

/**
 * Whether a write's result breaks its owner: a fenced write, or a Start that did not create its execution
 * (the owner, a runtime launched before its Start was committed, presumed it would).
 */
const breaksOwner = (write: JournalWrite, result: WriteResult) =>
  result._tag === "Fenced" || (write._tag === "Start" && result._tag !== "Created")

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

// ---------------------------------------------------------------------------------------------------------
// Committing a batch: merging, retries and unknown outcomes, isolating a refused write
// ---------------------------------------------------------------------------------------------------------

/** Commits what `resolveByReading` could not find in the journal; results in the order of `writes`. */
const commitUnresolved = (journal: Journal, writes: ReadonlyArray<JournalWrite>) =>
  Effect.flatMap(resolveByReading(journal, writes), (resolved) => {
    const remaining = writes.filter((_, i) => Option.isNone(resolved[i]!))
    if (remaining.length === 0) return Effect.succeed(resolved.map((r) => Option.getOrThrow(r)))
    return Effect.map(journal.commit(remaining), (results) => {
      let j = 0
      return resolved.map((r) => Option.isSome(r) ? r.value : results[j++]!)
    })
  })

/**
 * Commits `writes`, retrying retryable failures with backoff. A retried commit's earlier attempt may
 * have committed (its outcome is unknown): the retry resolves that by reading, never by writing twice.
 */
const commitWithRetries = (
  journal: Journal,
  options: GroupCommitOptions,
  writes: ReadonlyArray<JournalWrite>,
  outcomeUnknown: boolean
): Effect.Effect<ReadonlyArray<WriteResult>, CommitFailure> => {
  let attempt = 0
  let unknownOutcome = outcomeUnknown
  const loop: Effect.Effect<ReadonlyArray<WriteResult>, CommitFailure> = Effect.suspend(() =>
    Effect.catchAll(unknownOutcome ? commitUnresolved(journal, writes) : journal.commit(writes), (error) => {
      if (!error.retryable || attempt >= options.retries) {
        return Effect.fail<CommitFailure>({ error, unknownOutcome: unknownOutcome ? true : undefined })
      }
      attempt++
      unknownOutcome = true
      const delay = Duration.times(Duration.decode(options.retryBase), 2 ** Math.min(attempt - 1, 8))
      return Effect.zipRight(Effect.withClock(Effect.sleep(delay), liveClock), loop)
    })
  )
  return loop
}

/**
 * Commits `writes`; when the database refuses the batch for good (a non-retryable error: one write's
 * value it cannot store, a constraint...), commits each execution's writes on their own, so that only
 * the offending execution's writes fail (DESIGN.md section 8: one caller's conflict must not fail the
 * others). Each execution's writes stay in order, in one commit. One result per write: its outcome, or
 * the error that failed it alone.
 */
const commitIsolated = (
  journal: Journal,
  options: GroupCommitOptions,
  writes: ReadonlyArray<JournalWrite>
): Effect.Effect<ReadonlyArray<WriteResult | JournalError>, JournalError> =>
  Effect.catchAll(
    commitWithRetries(journal, options, writes, false),
    (failure): Effect.Effect<ReadonlyArray<WriteResult | JournalError>, JournalError> => {
      const groups = byExecution(writes)
      // a database that stays down fails every write alike: nothing to isolate
      if (failure.error.retryable || groups.length <= 1) return Effect.fail(failure.error)
      const results: Array<WriteResult | JournalError> = new Array(writes.length)
      return Effect.as(
        Effect.forEach(groups, (group) =>
          Effect.match(
            commitWithRetries(journal, options, group.map((i) => writes[i]!), failure.unknownOutcome === true),
            {
              onFailure: (groupFailure) => {
                for (const i of group) results[i] = groupFailure.error
              },
              onSuccess: (groupResults) => group.forEach((i, j) => results[i] = groupResults[j]!)
            }
          ), { discard: true }),
        results
      )
    }
  )

/** Commits a batch (its Appends merged, see `mergeAppends`): one result per pending write. */
const commitBatch = (
  journal: Journal,
  options: GroupCommitOptions,
  batch: ReadonlyArray<Pending>
): Effect.Effect<ReadonlyArray<WriteResult | JournalError>, JournalError> => {
  const { carrier, writes } = mergeAppends(batch)
  return Effect.map(commitIsolated(journal, options, writes), (results) => carrier.map((at) => results[at]!))
}

// ---------------------------------------------------------------------------------------------------------
// Telling the callers: results, failures, broken owners
// ---------------------------------------------------------------------------------------------------------

const failOne = (pending: Pending, error: JournalError) => {
  if (pending.owner !== undefined && !pending.owner.broken) {
    pending.owner.broken = true
    pending.owner.onBroken(error)
  }
  pending.result?.unsafeDone(Exit.fail(error))
}

/** Completes each pending write with its result; a fenced write breaks its owner. */
const complete = (batch: ReadonlyArray<Pending>, results: ReadonlyArray<WriteResult | JournalError>) => {
  for (let i = 0; i < batch.length; i++) {
    const pending = batch[i]!
    const result = results[i]!
    if (result instanceof JournalError) {
      failOne(pending, result)
      continue
    }
    if (pending.owner !== undefined && breaksOwner(pending.write, result) && !pending.owner.broken) {
      pending.owner.broken = true
      pending.owner.onBroken(result)
    }
    pending.result?.unsafeDone(Exit.succeed(result))
  }
}

/** Fails every pending write with the batch's error (a defect becomes a non-retryable `JournalError`). */
const fail = (batch: ReadonlyArray<Pending>, cause: Cause.Cause<JournalError>) => {
  const error = Option.getOrElse(
    Cause.failureOption(cause),
    () => new JournalError({ operation: "commit", message: Cause.pretty(cause), retryable: false })
  )
  for (const pending of batch) failOne(pending, error)
}

/** Settles writes with the outcome of the commit that carried them. */
const settle = (pendings: ReadonlyArray<Pending>, outcome: Exit.Exit<ReadonlyArray<WriteResult | JournalError>, JournalError>) => {
  if (Exit.isSuccess(outcome)) complete(pendings, outcome.value)
  else fail(pendings, outcome.cause)
}

// ---------------------------------------------------------------------------------------------------------
// The committer's state, the queue and the writer fiber's batching loop
// ---------------------------------------------------------------------------------------------------------

interface CommitterState {
  /** Writes waiting for the writer. A plain array: cheaper than a Queue on this hot path. */
  queue: Array<Pending>
  /** A drain is committing: it takes every write queued meanwhile before it stops. */
  draining: boolean
  /**
   * The last batch released several waiting callers: the writer lets ready fibers run before it drains,
   * so executions in lockstep share commits instead of the first of them committing alone.
   */
  loaded: boolean
  /** Queued writes somebody awaits. */
  awaitedQueued: number
  /** Batches committed so far. */
  commits: number
  /** The idle writer's resumption, when it waits for writes. */
  wake: ((effect: Effect.Effect<void>) => void) | undefined
  /** The drain's resumption, when every queued write is held back (see `Journal.holdBack`). */
  nudge: (() => void) | undefined
  /** The batch being committed, and a signal for when it is done (see `hold`). */
  inFlight: ReadonlyArray<Pending>
  batchDone: OneShot<void> | undefined
  /** The writes held back per owner (see `hold`): not in `queue`, not committed by the writer. */
  readonly held: Map<WriteOwner, Array<Pending>>
  /** Signals per held owner, resolved when its holder releases (a second holder waits for it). */
  readonly released: Map<WriteOwner, OneShot<void>>
}

const woken = Effect.void

const wakeWriter = (state: CommitterState) => {
  const waiter = state.wake
  if (waiter !== undefined && !state.draining) {
    state.wake = undefined
    waiter(woken)
  }
}

/** Queues a write for the writer, or keeps it with its owner's held writes. */
const enqueue = (state: CommitterState, pending: Pending) => {
  const heldWrites = pending.owner === undefined ? undefined : state.held.get(pending.owner)
  if (heldWrites !== undefined) {
    heldWrites.push(pending)
    return
  }
  state.queue.push(pending)
  if (pending.result !== undefined) state.awaitedQueued++
  wakeWriter(state)
  if (state.nudge !== undefined) state.nudge()
}

/** Takes a write off the queue into `batch`; a write of a broken owner is answered Fenced instead. */
const takeOne = (state: CommitterState, batch: Array<Pending>, pending: Pending) => {
  if (pending.result !== undefined) state.awaitedQueued--
  if (pending.owner?.broken) pending.result?.unsafeDone(Exit.succeed<WriteResult>({ _tag: "Fenced" }))
  else batch.push(pending)
}

/** Takes the next batch off the queue; writes of a broken owner are answered Fenced instead. */
const takeBatch = (state: CommitterState, maxBatch: number): Array<Pending> => {
  const queue = state.queue
  const taken = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch)
  state.queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch)
  const batch: Array<Pending> = []
  for (const pending of taken) takeOne(state, batch, pending)
  return batch
}

/**
 * `takeBatch`, leaving in the queue, in order, the writes `heldBack` holds back (for at most
 * `holdBackMillis` each) and every later write of their executions, so each execution's writes still
 * commit in submission order.
 */
const takeBatchHolding = (
  state: CommitterState,
  maxBatch: number,
  heldBack: (write: JournalWrite) => boolean,
  now: number
): Array<Pending> => {
  const batch: Array<Pending> = []
  const kept: Array<Pending> = []
  const blocked = new Set<string>()
  let taken = 0
  for (const pending of state.queue) {
    if (taken >= maxBatch) {
      kept.push(pending)
      continue
    }
    const id = pending.write.key.workflow + "\u0000" + pending.write.key.executionId
    const due = now - (pending.heldSince ?? now) >= holdBackMillis
    // (a broken owner's write is answered at once: nothing of its execution commits any more)
    if (pending.owner?.broken !== true && (blocked.has(id) || (!due && heldBack(pending.write)))) {
      pending.heldSince ??= now
      blocked.add(id)
      kept.push(pending)
      continue
    }
    taken++
    takeOne(state, batch, pending)
  }
  state.queue = kept
  return batch
}

/** Yields (at most 4 times) until `expected` awaited writes are queued. */
const gather = (state: CommitterState, expected: number, rounds: number): Effect.Effect<void> =>
  state.awaitedQueued >= expected || rounds >= 4
    ? Effect.void
    : Effect.flatMap(Effect.yieldNow(), () => gather(state, expected, rounds + 1))

/**
 * Commits batches until the queue is empty; one drain at a time (`draining`), so each execution's writes
 * commit in submission order. The writes the journal holds back (`Journal.holdBack`: a shard's lapse on
 * the cluster engine) stay queued while the others commit; when only they are left, the drain looks again
 * every `holdBackLookMillis` and at each write submitted.
 */
const makeDrain = (state: CommitterState, journal: Journal, options: GroupCommitOptions): Effect.Effect<void> => {
  const loop = (): Effect.Effect<void> => {
    if (state.queue.length === 0) {
      state.draining = false
      // (the last writes taken may have been answered without a commit: a broken owner's)
      batchSettled(state)
      return Effect.void
    }
    const holdBack = journal.holdBack
    if (holdBack === undefined) return commitNext(takeBatch(state, options.maxBatch))
    return Effect.flatMap(holdBack, (heldBack) => {
      if (heldBack === undefined) return commitNext(takeBatch(state, options.maxBatch))
      const batch = takeBatchHolding(state, options.maxBatch, heldBack, liveClock.unsafeCurrentTimeMillis())
      // every queued write is held back: look again after a while, or when a write is submitted
      if (batch.length === 0 && state.queue.length > 0) {
        // (writes of broken owners may have been answered meanwhile)
        batchSettled(state)
        return Effect.zipRight(waitHeldBack(state), Effect.suspend(loop))
      }
      return commitNext(batch)
    })
  }
  const commitNext = (batch: Array<Pending>): Effect.Effect<void> => {
    if (batch.length === 0) return loop()
    state.inFlight = batch
    return Effect.flatMap(Effect.exit(commitBatch(journal, options, batch)), (exit) => {
      state.commits++
      state.inFlight = []
      batchSettled(state)
      settle(batch, exit)
      // Several callers were waiting: the engine is loaded (see `makeWriter`).
      let waiters = 0
      for (let i = 0; i < batch.length; i++) if (batch[i]!.result !== undefined) waiters++
      state.loaded = waiters >= 2
      // The writes queued during this commit wait for the released callers' next awaited writes (a few
      // scheduler rounds: a caller may be resumed through another fiber), so they share the next commit.
      return state.loaded
        ? Effect.zipRight(gather(state, Math.min(waiters, options.maxBatch), 0), Effect.suspend(loop))
        : loop()
    })
  }
  return Effect.suspend(loop).pipe(Effect.onInterrupt(() =>
    Effect.sync(() => {
      state.draining = false
    })
  ))
}

/** Nothing is being committed: those waiting for a batch's end (`hold`, `settled`) look again. */
const batchSettled = (state: CommitterState) => {
  const done = state.batchDone
  if (done === undefined) return
  state.batchDone = undefined
  done.unsafeSucceed(undefined)
}

/** Waits `holdBackLookMillis` (live clock), or until a write is submitted (see `enqueue`). */
const waitHeldBack = (state: CommitterState): Effect.Effect<void> =>
  Effect.raceFirst(
    Effect.withClock(Effect.sleep(holdBackLookMillis), liveClock),
    Effect.async<void>((resume) => {
      state.nudge = () => {
        state.nudge = undefined
        resume(woken)
      }
      return Effect.sync(() => {
        state.nudge = undefined
      })
    })
  )

/**
 * The writer fiber: drains the queue, woken by the first write on an idle committer. When it runs with
 * only pipelined writes queued (a step's result, nobody awaits it), or when loaded, it lets the fibers
 * that are ready run first, so that the write shares its commit with the awaited write its execution
 * submits next (the next attempt marker, the workflow's completion, a suspension) instead of committing
 * alone just before it. With an awaited write queued on an idle engine it commits at once.
 * (A fiber per drain, started at once by the awaited write, saves that write a scheduler hop, but
 * creating it costs more than the hop: measured, not assumed.)
 */
const makeWriter = (state: CommitterState, drain: Effect.Effect<void>): Effect.Effect<never> => {
  const waitForWrites = Effect.async<void>((resume) => {
    if (state.queue.length > 0 && !state.draining) return resume(woken)
    state.wake = resume
    return Effect.sync(() => {
      if (state.wake === resume) state.wake = undefined
    })
  })
  const startDrain = Effect.suspend(() => {
    if (state.draining || state.queue.length === 0) return Effect.void
    state.draining = true
    return drain
  })
  return Effect.forever(
    Effect.flatMap(waitForWrites, () =>
      // (an awaited write submitted after the wake-up, before the writer ran, counts too)
      state.loaded || state.awaitedQueued === 0 ? Effect.zipRight(Effect.yieldNow(), startDrain) : startDrain)
  ).pipe(Effect.annotateLogs({ package: "@effect-cluster/cluster-workflow", module: "GroupCommit" }))
}

// ---------------------------------------------------------------------------------------------------------
// Holding an owner's writes for a transactional activity's own commit
// ---------------------------------------------------------------------------------------------------------

/** See `Committer.hold`. */
const hold = (state: CommitterState, owner: WriteOwner): Effect.Effect<Held> =>
  Effect.suspend(() => {
    // One holder per execution at a time: two transactions of one execution would race for sequences.
    const previous = state.released.get(owner)
    if (previous !== undefined) return Effect.zipRight(previous.await, hold(state, owner))
    const own: Array<Pending> = []
    state.queue = state.queue.filter((pending) => {
      if (pending.owner !== owner) return true
      if (pending.result !== undefined) state.awaitedQueued--
      own.push(pending)
      return false
    })
    state.held.set(owner, own)
    const signal = new OneShot<void>()
    state.released.set(owner, signal)
    let taken: ReadonlyArray<Pending> = []
    const release = (outcome: Exit.Exit<ReadonlyArray<WriteResult>, JournalError> | undefined) => {
      if (state.released.get(owner) !== signal) return
      const rest = state.held.get(owner) ?? []
      state.held.delete(owner)
      state.released.delete(owner)
      if (outcome !== undefined) settle(taken, outcome)
      else rest.unshift(...taken)
      taken = []
      for (const pending of rest) enqueue(state, pending)
      signal.unsafeSucceed(undefined)
    }
    const handle: Held = {
      take: () => {
        taken = state.held.get(owner) ?? []
        state.held.set(owner, [])
        return taken.map((pending) => pending.write)
      },
      release: (outcome) => Effect.sync(() => release(outcome))
    }
    // Its writes taken by a drain before the hold commit first; later drains cannot take any.
    if (!state.inFlight.some((pending) => pending.owner === owner)) return Effect.succeed(handle)
    const done = state.batchDone ?? (state.batchDone = new OneShot<void>())
    return Effect.as(done.await, handle).pipe(Effect.onInterrupt(() => Effect.sync(() => release(undefined))))
  })

/** See `Committer.settled`. */
const settled = (state: CommitterState, owner: WriteOwner): Effect.Effect<void> =>
  Effect.suspend(() => {
    // (a holder commits the held writes itself, or hands them back to the queue when it releases)
    const holder = state.released.get(owner)
    if (holder !== undefined) return Effect.zipRight(holder.await, settled(state, owner))
    const own = (pending: Pending) => pending.owner === owner
    if (!state.queue.some(own) && !state.inFlight.some(own)) return Effect.void
    const done = state.batchDone ?? (state.batchDone = new OneShot<void>())
    return Effect.zipRight(done.await, settled(state, owner))
  })

/** @internal */
export const make = (
  journal: Journal,
  options: GroupCommitOptions
): Effect.Effect<Committer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state: CommitterState = {
      queue: [],
      draining: false,
      loaded: false,
      awaitedQueued: 0,
      commits: 0,
      wake: undefined,
      nudge: undefined,
      inFlight: [],
      batchDone: undefined,
      held: new Map(),
      released: new Map()
    }
    yield* Effect.forkScoped(Effect.interruptible(makeWriter(state, makeDrain(state, journal, options))))
    return {
      submit: (write, owner) => {
        const result = new OneShot<WriteResult, JournalError>()
        enqueue(state, { write, owner, result })
        return result
      },
      submitPipelined: (write, owner) => enqueue(state, { write, owner, result: undefined }),
      hold: (owner) => hold(state, owner),
      settled: (owner) => settled(state, owner),
      commits: () => state.commits
    }
  })
