/**
 * One active shard manager among standbys, through the manager lease row of a `LeasedStorage`. A standby
 * takes the lease only after it saw the row unchanged (no renewal) for `leaseDuration + leaseMargin` on its
 * own monotonic clock, by compare-and-set; the active manager renews it every `leaseDuration / 3`. Every
 * write of the active manager goes through `fencedBy(holder, term)`, so once a standby has taken over, the
 * deposed manager's writes are rejected whatever it still believes. What it answers without writing (lease
 * grants to pods, the routing table) is fenced by `active`: it holds only until `leaseDuration` after the
 * last renewal it sent that succeeded, by its own clock, and a standby takes over no earlier than
 * `leaseDuration + leaseMargin` after it saw that renewal.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { LeasedStorage, ManagerLease, Storage, StorageException } from "./Storage.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface ManagerLeaseOptions {
  /** This manager process (unique per process start). */
  readonly holder: string
  readonly leaseDuration: Duration.DurationInput
  readonly leaseMargin: Duration.DurationInput
}

/**
 * The lease, held.
 *
 * @since 0.1.0
 * @category models
 */
export interface HeldManagerLease {
  readonly holder: string
  /** The fencing token of this tenure. */
  readonly term: number
  /** The storage to give the manager: its writes fail (`fenced`) once another manager took over. */
  readonly storage: Storage & Pick<LeasedStorage, "saveAll">
  /** Completes when the lease is lost (another manager took it over): stop the manager then. */
  readonly lost: Effect.Effect<void>
  /**
   * Whether this process is certainly still the only active manager: less than `leaseDuration` has passed,
   * on its monotonic clock, since it sent the last renewal (or the acquisition) that succeeded, and the
   * lease was not found lost. A manager answers pods only while it is.
   */
  readonly active: Effect.Effect<boolean>
}

/**
 * The manager lease this process holds, in the context of a manager started by
 * `NodeCluster.layerManager({ standby: ... })`.
 *
 * @since 0.1.0
 * @category context
 */
export const Tenure: Context.Tag<HeldManagerLease, HeldManagerLease> = Context.GenericTag<HeldManagerLease>(
  "@effect-cluster/cluster/ManagerLease/Tenure"
)

/**
 * Waits until this process holds the manager lease (standby until then), then renews it in a fiber of the
 * current scope. Closing the scope stops renewing, so a standby takes over after the lease period.
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquire = (
  storage: LeasedStorage,
  options: ManagerLeaseOptions
): Effect.Effect<HeldManagerLease, StorageException, Scope.Scope> =>
  Effect.gen(function*() {
    const leaseMillis = Duration.toMillis(options.leaseDuration)
    const quietMillis = leaseMillis + Duration.toMillis(options.leaseMargin)
    const interval = Duration.millis(Math.max(1, Math.floor(leaseMillis / 3)))
    const now = Effect.map(Effect.clockWith((clock) => clock.currentTimeNanos), (nanos) => Number(nanos) / 1_000_000)

    // Standby: the row must stay unchanged for quietMillis by this process's clock before a take-over.
    let seen: { readonly lease: ManagerLease; readonly since: number } | undefined
    let term: number | undefined
    let validUntil = 0
    while (term === undefined) {
      const current = yield* storage.getManagerLease
      const at = yield* now
      validUntil = at + leaseMillis
      if (Option.isNone(current)) {
        term = Option.getOrUndefined(yield* storage.acquireManagerLease(options.holder, Option.none()))
      } else if (
        seen === undefined || seen.lease.term !== current.value.term || seen.lease.renewals !== current.value.renewals
      ) {
        seen = { lease: current.value, since: at }
      } else if (at - seen.since >= quietMillis) {
        term = Option.getOrUndefined(yield* storage.acquireManagerLease(options.holder, current))
        seen = undefined
      }
      if (term === undefined) yield* Effect.sleep(interval)
    }

    const held = term
    const lost = yield* Deferred.make<void>()
    yield* Effect.forkScoped(
      Effect.gen(function*() {
        for (;;) {
          yield* Effect.sleep(interval)
          // The time the renewal is sent: a standby that sees it counts its quiet period from a later time.
          const sentAt = yield* now
          // (a defect of the storage counts as a failed renewal, as an error does: the loop goes on)
          const renewed = yield* Effect.exit(storage.renewManagerLease(options.holder, held))
          if (Exit.isSuccess(renewed) && renewed.value) {
            validUntil = Math.max(validUntil, sentAt + leaseMillis)
          } else if (Exit.isSuccess(renewed)) {
            yield* Effect.logWarning(`manager ${options.holder} lost the manager lease (term ${held})`)
            return yield* Deferred.succeed(lost, undefined)
          } else if (Cause.isInterruptedOnly(renewed.cause)) {
            return yield* Effect.interrupt
          } else {
            yield* Effect.logWarning("could not renew the manager lease; trying again", renewed.cause)
          }
          // A failed renewal is retried next interval; the fence keeps writes safe meanwhile, and `active`
          // turns false once the last successful one is a lease period old.
        }
      }).pipe(Effect.annotateLogs({ fiber: "manager-lease" }))
    )
    const active = Effect.zipWith(now, Deferred.isDone(lost), (at, isLost) => !isLost && at < validUntil)
    return {
      holder: options.holder,
      term: held,
      storage: storage.fencedBy(options.holder, held),
      lost: Deferred.await(lost),
      active
    }
  })
