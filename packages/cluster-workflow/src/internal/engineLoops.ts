/**
 * The engine's background work: the timer's due scan, the renewal loop with its lease watchdog, the scan
 * for orphaned and stale-suspended executions, and the journal-read retry they share.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import { JournalError } from "../DurableExecutionJournal.js"
import type { Engine } from "./engine.js"
import { liveClock, monotonicMillis } from "./engineShared.js"
import type { ExecutionRuntime } from "./execution.js"
import { keyString } from "./results.js"
import { claimOrRetryLater } from "./lockedClaims.js"

/**
 * Resumes the suspended executions whose deadline is at or before `dueAt`, in deadline order. Returns the
 * first journal failure of a claim, if any (the timer then backs off: see `EngineTimer`); the other
 * executions due are still tried.
 */
export const resumeDue = (engine: Engine, dueAt: number): Effect.Effect<JournalError | undefined> => {
  return Effect.gen(function*() {
    const due = yield* retryJournal(engine, engine.journal.dueTimers(engine.names, dueAt, 1000))
    let failed: JournalError | undefined
    for (const key of due) {
      yield* Effect.catchAll(engine.claimAndLaunch(key), (error) =>
        error._tag === "JournalError"
          ? Effect.sync(() => {
            failed ??= error
          })
          : Effect.logWarning("could not resume", error))
    }
    return failed
  })
}

/**
 * After an execution stopped at its lease's end: once its claim has ended in the journal too (another
 * margin later, on the engine's clock), claims it again, unless another engine took it over meanwhile
 * (then the claim fails and nothing happens); retries while the journal fails.
 */
const takeBackAfterLeaseEnd = (engine: Engine, runtime: ExecutionRuntime) => {
  // (only the retry delays are on the live clock: the claim keeps the engine's clock)
  const attempt = (delay: number): Effect.Effect<void> =>
    Effect.catchAll(Effect.asVoid(engine.claimAndLaunch(runtime.key)), (error) =>
      error._tag === "PayloadDecodeError"
        ? Effect.void
        : Effect.zipRight(
          Effect.withClock(Effect.sleep(delay), liveClock),
          Effect.suspend(() => attempt(Math.min(delay * 2, 30_000)))
        ))
  engine.runFork(Effect.zipRight(
    Effect.zipRight(runtime.done.await, Effect.sleep(engine.leaseMargin * 2)),
    attempt(100)
  ))
}

/**
 * Renews the claims of live executions every lease/3, only while there are any. An execution whose
 * lease ends (by this engine's monotonic clock, measured from the send of its last successful renewal)
 * before a renewal succeeds is stopped: another engine may take it over once the claim expires, and
 * two engines must never both run it (issue 9 #11).
 */
export const renewLoop = (engine: Engine): Effect.Effect<never> => Effect.gen(function*() {
  const every = Math.max(1, Math.floor(engine.leaseMillis / 3))
  let renewAt = (yield* monotonicMillis) + every
  while (true) {
    if (engine.live.size === 0) {
      yield* Queue.take(engine.liveChanged)
      renewAt = (yield* monotonicMillis) + every
      continue
    }
    let earliest = renewAt
    for (const runtime of engine.live.values()) {
      const end = engine.leaseEnds.get(runtime)
      if (end !== undefined && end < earliest) earliest = end
    }
    const wait = earliest - (yield* monotonicMillis)
    if (wait > 0) {
      // another process changed something (SQLite): renew now, which reads the inbox versions
      const soon = yield* Effect.raceFirst(
        Effect.as(Effect.sleep(wait), false),
        Effect.as(Queue.take(engine.renewSoon), true)
      )
      if (soon) renewAt = yield* monotonicMillis
    }
    const now = yield* monotonicMillis
    const ending = Array.from(engine.live.values()).some((runtime) => (engine.leaseEnds.get(runtime) ?? Infinity) <= now)
    // A lease about to end gets one last renewal, answered within the margin (on the live clock: the
    // time a database takes to answer is real time) before its execution is stopped.
    if (now >= renewAt || ending) {
      renewAt = now + every
      yield* renewLive(engine, ending)
    }
    const after = yield* monotonicMillis
    for (const runtime of engine.live.values()) {
      const end = engine.leaseEnds.get(runtime)
      if (end !== undefined && end <= after && !runtime.suspending) {
        engine.leaseEnds.delete(runtime)
        yield* Effect.logWarning("an execution's claim could not be renewed before its lease ended; it stops here")
          .pipe(Effect.annotateLogs({ workflow: runtime.key.workflow, executionId: runtime.key.executionId }))
        runtime.notifyClaimLost()
        takeBackAfterLeaseEnd(engine, runtime)
      }
    }
  }
})

/** Renews the claims of the live executions; `bounded`: give up after the lease margin (live clock). */
const renewLive = (engine: Engine, bounded: boolean): Effect.Effect<void> => {
  return Effect.gen(function*() {
    const runtimes = Array.from(engine.live.values()).filter((runtime) => engine.leaseEnds.has(runtime))
    if (runtimes.length === 0) return
    const sentAt = yield* monotonicMillis
    const wallNow = yield* Clock.currentTimeMillis
    const renew = engine.journal.renew(
      engine.owner,
      runtimes.map((runtime) => ({ key: runtime.key, epoch: runtime.currentEpoch })),
      wallNow + engine.leaseMillis
    )
    const rows = yield* Effect.either(
      bounded
        ? Effect.timeoutFail(renew, {
          duration: engine.leaseMargin,
          onTimeout: () =>
            new JournalError({ operation: "renew", message: "no answer within the lease margin", retryable: true })
        }).pipe(Effect.withClock(liveClock))
        : renew
    )
    if (Either.isLeft(rows)) {
      yield* Effect.logWarning("could not renew claims", rows.left)
      return
    }
    rows.right.forEach((row, i) => {
      const runtime = runtimes[i]!
      if (row === undefined) runtime.notifyClaimLost()
      else {
        if (engine.leaseEnds.has(runtime)) engine.leaseEnds.set(runtime, sentAt + engine.leaseMillis - engine.leaseMargin)
        if (row.inboxVersion > runtime.currentInboxVersion) runtime.notifyInbox()
      }
    })
  })
}

/** Resumes unfinished executions nobody runs (at start, and every `orphanCheckInterval` if set). */
export const resumeOrphans = (engine: Engine): Effect.Effect<number, JournalError> => Effect.gen(function*() {
  let resumed = 0
  const page = 500
  while (true) {
    const now = yield* Clock.currentTimeMillis
    // Executions this engine could not read stay claimed by it: skip them (they are logged once), or
    // every page would be the same undecodable ones and the start would never end.
    const keys = yield* engine.journal.resumable(engine.names, engine.owner, now, page + engine.unreadable.size)
    const fresh = keys.filter((key) => !engine.live.has(keyString(key)) && !engine.unreadable.has(keyString(key)))
    if (fresh.length === 0) break
    for (const key of fresh.slice(0, page)) {
      // (a row locked by another transaction: not claimed now, tried again in the background)
      const launched = yield* Effect.catchTag(claimOrRetryLater(engine, key), "PayloadDecodeError", () =>
        Effect.sync(() => {
          engine.unreadable.add(keyString(key))
          return false
        }))
      if (launched) resumed++
    }
    if (keys.length < page + engine.unreadable.size) break
  }
  // Suspended executions whose inbox changed after they suspended: the process that stored the signal
  // (or cancellation) died before waking them (issue 9 #2).
  if (engine.journal.staleSuspensions !== undefined) {
    const stale = yield* engine.journal.staleSuspensions(engine.names, page)
    for (const key of stale) {
      if (engine.live.has(keyString(key)) || engine.unreadable.has(keyString(key))) continue
      // (a row locked by another transaction: not claimed now, tried again in the background)
      const launched = yield* Effect.catchTag(claimOrRetryLater(engine, key), "PayloadDecodeError", () =>
        Effect.sync(() => {
          engine.unreadable.add(keyString(key))
          return false
        }))
      if (launched) resumed++
    }
  }
  return resumed
})

/** Retries a journal read with backoff on the live clock, for ever (logged after `journalRetries`). */
export const retryJournal = <A>(engine: Engine, effect: Effect.Effect<A, JournalError>): Effect.Effect<A> => {
  const retries = engine.options.journalRetries ?? 8
  const loop = (attempt: number): Effect.Effect<A> =>
    Effect.catchAll(effect, (error) =>
      attempt >= retries
        ? Effect.zipRight(
          Effect.logError("the journal keeps failing", error),
          Effect.zipRight(Effect.withClock(Effect.sleep(Duration.seconds(5)), liveClock), loop(0))
        )
        : Effect.zipRight(Effect.withClock(Effect.sleep(Duration.millis(10 * 2 ** attempt)), liveClock), loop(attempt + 1)))
  return loop(0)
}
