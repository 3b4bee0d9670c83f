/**
 * What an engine does about other engines (issue 9 #4, #9): it registers its own liveness with the
 * journal, resumes a dead engine's executions as soon as that death is certain (or at the end of the
 * dead engine's claim, without anyone asking), wakes when another process changes an inbox, and gives its
 * claims up when it shuts down gracefully. docs/engine.md, "Crashes and restarts", describes it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { EngineRegistration, ExecutionKey, Journal } from "../DurableExecutionJournal.js"
import type { JournalError } from "../DurableExecutionJournal.js"
import type { PayloadDecodeError } from "../WorkflowError.js"
import { announcedBy } from "./announcer.js"
import { forkDetachable, shutdownBound } from "./engineShared.js"
import { liveClock } from "./liveClock.js"


/** The watch's back-off on an expired claim it cannot take (live clock), as the timer's. */
const firstBackoff = 50
const maxBackoff = 5_000

/**
 * Whether two reads of the next expiring claim show the same claim: the same owner and an end within a
 * second (a SQL journal returns the end in the caller's clock, shifted by a millisecond or two at each
 * read; a renewal moves it by a lease).
 */
const sameExpiry = (
  a: { readonly owner: string; readonly claimUntil: number } | undefined,
  b: { readonly owner: string; readonly claimUntil: number }
) => a !== undefined && a.owner === b.owner && Math.abs(a.claimUntil - b.claimUntil) < 1_000

/** What the liveness loops need of the engine. */
export interface LivenessHost {
  readonly journal: Journal
  readonly owner: string
  readonly names: ReadonlyArray<string>
  readonly leaseMillis: number
  readonly resumeOrphans: Effect.Effect<number, JournalError>
  /** Claims an execution and runs it here (one whose row is locked: again in the background). */
  readonly claimAndLaunch: (key: ExecutionKey) => Effect.Effect<boolean, JournalError | PayloadDecodeError>
  /** The execution runs here: tell it its inbox changed; false when it does not. */
  readonly notifyLive: (key: ExecutionKey) => boolean
  /** Live claims (to give up at a graceful shutdown). */
  readonly liveClaims: () => ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>
  /** Stops every live execution (its liveness registration was lost: others may take them over). */
  readonly stopAll: () => void
  /** Runs an effect on the engine's runtime (its clock, its scope). */
  readonly fork: (effect: Effect.Effect<void>) => void
  /** Asks the renewal loop to renew (and so read the inbox versions of live executions) now. */
  readonly renewNow: () => void
}

/**
 * The engine's liveness state: its current registration, and how it hears of other engines.
 *
 * @internal
 */
export class Liveness {
  registration: EngineRegistration | undefined = undefined
  private readonly lookAround: Queue.Queue<void>

  constructor(readonly host: LivenessHost, readonly checkEvery: Duration.Duration) {
    this.lookAround = Effect.runSync(Queue.sliding<void>(1))
  }

  /**
   * Runs journal writes as this engine's registration: their change announcements are tagged with it,
   * and this registration's watch does not hear them (see announcer.ts).
   */
  announcing<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    const registration = this.registration
    return registration === undefined ? effect : Effect.locally(effect, announcedBy, registration.instance)
  }

  /**
   * A change by another process (or engine) of an execution, or of something (undefined). Its own changes
   * the engine does not hear (a pass-through to other live engines stays one).
   */
  onChange(key: ExecutionKey | undefined, id: string | undefined) {
    if (key === undefined || id === undefined) {
      this.host.renewNow()
      this.lookAround.unsafeOffer(undefined)
      return
    }
    if (this.host.notifyLive(key)) return
    if (!this.host.names.includes(key.workflow)) return
    // (a row locked by another transaction is claimed again in the background: see lockedClaims.ts)
    this.host.fork(Effect.ignore(this.host.claimAndLaunch(key)))
  }

  /**
   * Keeps this engine registered for as long as the scope is open: registers it (before returning),
   * watches for changes by other processes, and when the registration is lost (PostgreSQL: its session
   * died), acts as its ownership policy says (in-process: stops every live execution, since others may now
   * take them over) and registers again.
   */
  register(keyId: (key: ExecutionKey) => string): Effect.Effect<void, never, Scope.Scope> {
    const registerEngine = this.host.journal.registerEngine
    if (registerEngine === undefined) return Effect.void
    return Effect.gen(this, function*() {
      const ready = yield* Deferred.make<void>()
      let failures = 0
      const session: Effect.Effect<never, JournalError> = Effect.scoped(Effect.gen(this, function*() {
        const registration = yield* registerEngine(this.host.owner, this.host.names)
        if (registration.watchChanges !== undefined) {
          yield* registration.watchChanges((key) => this.onChange(key, key === undefined ? undefined : keyId(key)))
        }
        this.registration = registration
        failures = 0
        yield* Deferred.succeed(ready, undefined)
        return yield* registration.lost
      }))
      // (a defect in the session, e.g. a journal wrapper's, is handled as a loss: the engine registers again)
      const keep: Effect.Effect<never> = Effect.catchAllCause(session, (error) =>
        Cause.isInterruptedOnly(error) ? Effect.interrupt : Effect.gen(this, function*() {
          if (this.registration !== undefined) {
            this.registration = undefined
            yield* Effect.logWarning("the engine's liveness registration was lost (it registers again)", error)
            this.host.stopAll()
          } else if (failures++ === 0) {
            yield* Effect.logWarning(
              "the engine could not register its liveness (it tries again); meanwhile others resume its executions at their claims' end",
              error
            )
          }
          yield* Deferred.succeed(ready, undefined)
          yield* Effect.withClock(Effect.sleep(Duration.seconds(Math.min(30, failures))), liveClock)
        })).pipe(Effect.zipRight(Effect.suspend(() => keep)))
      // (its scope unregisters the engine: detached past a bound when the journal does not answer)
      yield* forkDetachable("liveness registration", keep, shutdownBound)
      yield* Deferred.await(ready)
    })
  }

  /**
   * Resumes what other engines left: a dead engine's executions as soon as the journal knows it is dead,
   * and executions claimed by another engine when that claim ends (on the engine's clock, so TestClock
   * drives it in tests), without anyone sending or awaiting them. While it waits on a live engine's claim
   * it logs which engine and until when (once per engine).
   */
  readonly watch: Effect.Effect<never> = Effect.gen(this, function*() {
    const { journal, names, owner } = this.host
    let waitingOn: string | undefined
    // the expired claim last tried, and the back-off (live clock) while it stays there (it may be one
    // this engine cannot take: the journal refuses the claim while reads work)
    let expired: { readonly owner: string; readonly claimUntil: number } | undefined
    let failures = 0
    let retryAt = 0
    let checks = 0
    while (true) {
      if (journal.releaseDeadClaims !== undefined) {
        const released = yield* Effect.either(journal.releaseDeadClaims(this.registration))
        if (Either.isRight(released) && released.right > 0) {
          yield* Effect.logInfo("resuming the executions of a dead engine").pipe(
            Effect.annotateLogs({ executions: released.right })
          )
          yield* Effect.ignore(this.host.resumeOrphans)
        }
      }
      const next = journal.nextClaimExpiry === undefined
        ? undefined
        : Either.getOrUndefined(yield* Effect.either(journal.nextClaimExpiry(names, owner)))
      const now = yield* Clock.currentTimeMillis
      let backingOff = false
      if (next !== undefined && next.claimUntil < now) {
        if (!sameExpiry(expired, next)) {
          // a new expiry: resume it now
          expired = next
          failures = 0
          yield* Effect.ignore(this.host.resumeOrphans)
          continue
        }
        // the same expired claim is still there (a SQL journal reads its end back shifted by a
        // millisecond or two): it could not be taken; try again with back-off, 50 ms doubling to 5 s
        if (retryAt === 0) {
          failures++
          const delay = Math.min(maxBackoff, firstBackoff * 2 ** Math.min(failures - 1, 20))
          retryAt = (yield* Effect.withClock(Clock.currentTimeMillis, liveClock)) + delay
          if (failures === 1) {
            yield* Effect.logWarning("could not resume an expired claim of another engine; trying again with back-off")
              .pipe(Effect.annotateLogs({ engine: next.owner }))
          }
        }
        backingOff = true
      } else {
        expired = undefined
        failures = 0
        retryAt = 0
      }
      if (next !== undefined && next.claimUntil >= now && next.owner !== waitingOn) {
        waitingOn = next.owner
        yield* Effect.logDebug("waiting for another engine's claim to end (it resumes what that engine leaves)").pipe(
          Effect.annotateLogs({ engine: next.owner, claimUntil: new Date(next.claimUntil).toISOString() })
        )
      } else if (next === undefined) waitingOn = undefined
      const waits: Array<Effect.Effect<"check" | "change" | "expiry" | "retry">> = [
        Effect.as(Effect.withClock(Effect.sleep(this.checkEvery), liveClock), "check" as const),
        Effect.as(Queue.take(this.lookAround), "change" as const)
      ]
      if (next !== undefined && next.claimUntil >= now) {
        waits.push(Effect.as(Effect.sleep(next.claimUntil - now + 1), "expiry" as const))
      }
      if (backingOff) {
        const until = retryAt
        const wait = Effect.flatMap(Clock.currentTimeMillis, (liveNow) => Effect.sleep(Math.max(0, until - liveNow)))
        waits.push(Effect.as(Effect.withClock(wait, liveClock), "retry" as const))
      }
      const woke = yield* Effect.raceAll(waits)
      if (woke === "retry") retryAt = 0
      // and a periodic repair, once a lease (live clock): what no notification announced
      checks = woke === "check" ? checks + 1 : 0
      const repair = checks * Duration.toMillis(this.checkEvery) >= this.host.leaseMillis
      if (repair) checks = 0
      if (woke !== "check" || repair) yield* Effect.ignore(this.host.resumeOrphans)
    }
  })

  /**
   * A graceful shutdown: gives up the claims of the executions this engine ran (after they stopped), so
   * the next engine resumes them at once instead of at their claim's end. Bounded by `shutdownBound` (live
   * clock): a journal that does not answer leaves the claims to end at their lease, as after a crash.
   */
  release(claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>): Effect.Effect<void> {
    const release = this.host.journal.release
    if (release === undefined || claims.length === 0) return Effect.void
    // (disconnected and interruptible, though run by a finalizer: a query the database does not answer is
    // left to end on its own, not awaited)
    return Effect.withClock(Effect.timeout(Effect.interruptible(Effect.disconnect(release(this.host.owner, claims))), shutdownBound), liveClock).pipe(
      Effect.asVoid,
      Effect.catchAll((error) =>
        error._tag === "TimeoutException"
          ? Effect.logWarning(
            `could not release the engine's claims at shutdown within ${Duration.format(shutdownBound)} (the journal ` +
              "does not answer); they end at their lease, as after a crash"
          ).pipe(Effect.annotateLogs({ claims: claims.length }))
          : Effect.logWarning("could not release the engine's claims at shutdown", error)
      )
    )
  }
}
