/**
 * Real processes on 127.0.0.1: the `effect-cluster manager` bin on PostgreSQL and three pod processes
 * (test/process/podChild.ts), killed (SIGKILL), paused (SIGSTOP/SIGCONT) and stopped (SIGTERM) while a
 * client in this process sends steady traffic. Every entity records its start, stop and messages in an
 * observer table with the process (incarnation) that ran it; each test ends by checking from that table
 * that no entity ran on two pods at once and no message was handled by two pods. The pods and the client
 * are given two manager URIs (the first manager's port and a standby's), as in a deployment with a
 * standby; pods make fenced writes (FencedWrite) on command, under the epoch of an instance they ran.
 *
 * Leases are 5 s (renewed every 1.5 s, margin 1 s; process/cluster.ts) so a lost pod's shards move within seconds;
 * 3 s in the manager-outage test. Pods renew their leases in the database as well as through the manager.
 * Nothing sleeps to synchronise: every wait polls a condition (the persisted assignment, the observer
 * table, a child's output line) with a bound.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Fiber, Ref } from "effect"
import { afterAll } from "vitest"
import { eventuallyLive } from "./utils/network.js"
import { pgClientLayer, postgresSkipReason } from "./utils/sql.js"
import { shortTiming, singleOwnerViolations } from "./process/cluster.js"
import { cleanUpChildren } from "./process/harness.js"
import {
  makeCluster,
  makeClusterWith,
  type PodProcess,
  sendOnce,
  type SendOutcome,
  type TestCluster,
  traffic
} from "./process/multiProcess.js"

afterAll(() => cleanUpChildren())

const entityIds = Array.from({ length: 12 }, (_, i) => `entity-${i}`)

/** Sends to every entity once (so each has started somewhere); all must succeed. */
const warmUp = (cluster: TestCluster) =>
  Effect.gen(function*() {
    const outcomes = yield* Effect.forEach(entityIds, (id) => sendOnce(cluster.client, id), { concurrency: "unbounded" })
    expect(outcomes.filter((outcome) => outcome._tag !== "Ok")).toEqual([])
  })

const entitiesOf = (cluster: TestCluster, pod: PodProcess) =>
  Effect.gen(function*() {
    const owned: Array<string> = []
    for (const id of entityIds) if ((yield* cluster.ownerOf(id)) === pod.incarnation) owned.push(id)
    return owned
  })

/** Runs traffic around `scenario`; returns its outcomes once the scenario is done. */
const withTraffic = <A, E, R>(cluster: TestCluster, scenario: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const running = yield* Ref.make(true)
    const fiber = yield* Effect.fork(traffic(cluster.client, entityIds, running))
    const result = yield* scenario
    yield* Ref.set(running, false)
    const outcomes = yield* Fiber.join(fiber)
    return { result, outcomes }
  })

const summary = (outcomes: ReadonlyArray<SendOutcome>) => ({
  ok: outcomes.filter((o) => o._tag === "Ok").length,
  typed: outcomes.filter((o) => o._tag === "Typed").length,
  untyped: outcomes.filter((o) => o._tag === "Untyped").map((o) => o.error)
})

const expectSingleOwner = (cluster: TestCluster) =>
  Effect.gen(function*() {
    const events = yield* cluster.events
    const violations = singleOwnerViolations(events)
    if (violations.length > 0) {
      // The story of each entity concerned, for the failure report.
      const entities = new Set(violations.map((v) => v.split(" ")[1]!.replace(/:$/, "")))
      console.log(events.filter((e) => entities.has(e.entity_id) || e.entity_id === "*").map((e) =>
        `#${e.id} ${e.entity_id} ${e.event} ${e.incarnation} ${e.message_id ?? ""} at=${e.at}`
      ).join("\n"))
    }
    expect(violations).toEqual([])
    return events
  })

/** The status of a manager's `/health` (0: no answer). */
const healthOf = (port: number) =>
  Effect.promise(() =>
    fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5_000) }).then(
      (response) => response.status,
      () => 0
    )
  )

/** Waits until every entity of `ids` started on an incarnation other than `gone`. */
const movedAway = (cluster: TestCluster, ids: ReadonlyArray<string>, gone: PodProcess, timeoutMillis = 30_000) =>
  eventuallyLive(
    Effect.map(
      Effect.forEach(ids, (id) => cluster.ownerOf(id)),
      (owners) => owners.every((owner) => owner !== undefined && owner !== gone.incarnation)
    ),
    timeoutMillis
  )

describe.skipIf(postgresSkipReason !== undefined)("multi-process cluster on PostgreSQL", () => {
  it.live("kill -9 of a pod: its entities serve again from another pod after its lease; every send answered or typed", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster
      const pods = yield* cluster.startPods(["pod-1", "pod-2", "pod-3"])
      yield* cluster.balancedOn(pods)
      yield* warmUp(cluster)
      const victim = pods[0]!
      const victims = yield* entitiesOf(cluster, victim)
      expect(victims.length).toBeGreaterThan(0)
      const { outcomes } = yield* withTraffic(
        cluster,
        Effect.gen(function*() {
          yield* victim.child.signal("SIGKILL")
          yield* victim.child.awaitExit()
          yield* cluster.mark(victim, "killed")
          // The manager moves its shards only once its lease (+ margin) has ended.
          yield* cluster.balancedOn(pods.slice(1))
          yield* movedAway(cluster, victims, victim)
        })
      )
      // After the move, each of the victim's entities answers from its new owner.
      const after = yield* Effect.forEach(victims, (id) => sendOnce(cluster.client, id), { concurrency: "unbounded" })
      expect(after.filter((o) => o._tag !== "Ok")).toEqual([])
      const counts = summary(outcomes)
      expect(counts.untyped).toEqual([])
      expect(counts.ok).toBeGreaterThan(0)
      yield* expectSingleOwner(cluster)
    }).pipe(Effect.scoped, Effect.provide(pgClientLayer), Effect.orDie), { timeout: 120_000 })

  it.live("SIGSTOP past the lease, then SIGCONT: the others took its shards, the resumed pod handles none of their messages and its fenced write is rejected", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster
      const pods = yield* cluster.startPods(["pod-1", "pod-2", "pod-3"])
      yield* cluster.balancedOn(pods)
      yield* warmUp(cluster)
      const frozen = pods[1]!
      const moved = yield* entitiesOf(cluster, frozen)
      expect(moved.length).toBeGreaterThan(0)
      // While it owns the shard, the pod's fenced write under its instance's epoch commits.
      const before = yield* cluster.fencedWrite(frozen, moved[0]!)
      expect(before.outcome).toBe("committed")
      const { outcomes } = yield* withTraffic(
        cluster,
        Effect.gen(function*() {
          // Marked with the time just after the signal: the pod can begin nothing from then until SIGCONT.
          yield* frozen.child.signal("SIGSTOP")
          yield* cluster.mark(frozen, "frozen")
          yield* cluster.balancedOn([pods[0]!, pods[2]!])
          yield* movedAway(cluster, moved, frozen)
          yield* cluster.mark(frozen, "resumed")
          yield* frozen.child.signal("SIGCONT")
          // Resumed, the same write under the same (old) epoch is rejected, and nothing is written.
          const resumed = yield* cluster.fencedWrite(frozen, moved[0]!)
          expect(resumed).toEqual({ epoch: before.epoch, outcome: "stale" })
          expect((yield* cluster.fencedRows).filter((row) => row.entity_id === moved[0])).toEqual([
            { entity_id: moved[0], incarnation: frozen.incarnation, epoch: before.epoch }
          ])
          // Resumed, it finds its lease over: it stops the entities it still had (their finalizers run).
          yield* eventuallyLive(
            Effect.map(cluster.events, (events) =>
              moved.every((id) =>
                events.some((e) => e.entity_id === id && e.incarnation === frozen.incarnation && e.event === "stop")
              )),
            30_000
          )
          // Traffic goes on for a round of every sender after the resume.
          const mark = (yield* cluster.events).length
          yield* eventuallyLive(
            Effect.map(cluster.events, (events) =>
              moved.every((id) => events.slice(mark).some((e) => e.entity_id === id && e.event === "msg"))),
            30_000
          )
        })
      )
      const counts = summary(outcomes)
      expect(counts.untyped).toEqual([])
      const events = yield* expectSingleOwner(cluster)
      // The resumed pod began handling nothing for the moved entities until it got their shard back (it
      // re-registers and a balancing round may return shards to it, with a new instance): every message
      // row it wrote in between is of a handler that had begun before the freeze.
      const frozenAt = events.find((e) => e.event === "frozen")!.at
      for (const id of moved) {
        const restart = events.find((e) => e.entity_id === id && e.event === "start" && e.incarnation !== frozen.incarnation)!
        const back = events.find((e) =>
          e.id > restart.id && e.entity_id === id && e.event === "start" && e.incarnation === frozen.incarnation
        )
        expect(
          events.filter((e) =>
            e.id > restart.id && (back === undefined || e.id < back.id) && e.entity_id === id &&
            e.incarnation === frozen.incarnation && e.event === "msg" && e.at >= frozenAt
          )
        ).toEqual([])
      }
    }).pipe(Effect.scoped, Effect.provide(pgClientLayer), Effect.orDie), { timeout: 120_000 })

  it.live("SIGTERM rolling restart of every pod under steady traffic: no send fails", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster
      let pods = yield* cluster.startPods(["pod-1", "pod-2", "pod-3"])
      yield* cluster.balancedOn(pods)
      yield* warmUp(cluster)
      const { outcomes } = yield* withTraffic(
        cluster,
        Effect.gen(function*() {
          for (let round = 0; round < 3; round++) {
            const [fresh] = yield* cluster.startPods([`pod-${4 + round}`])
            const old = pods[0]!
            yield* cluster.balancedOn([...pods, fresh!])
            yield* old.child.signal("SIGTERM")
            const exit = yield* old.child.awaitExit()
            expect(exit.signal).toBeNull()
            pods = [...pods.slice(1), fresh!]
            yield* cluster.balancedOn(pods)
          }
        })
      )
      const counts = summary(outcomes)
      expect(counts.untyped).toEqual([])
      expect(counts.typed).toBe(0)
      expect(counts.ok).toBeGreaterThan(0)
      const events = yield* expectSingleOwner(cluster)
      // Graceful: every entity that ran on a stopped pod was stopped there (its finalizer ran).
      const stoppedPods = new Set(events.filter((e) => e.incarnation.startsWith("pod-1:") || e.incarnation.startsWith("pod-2:") || e.incarnation.startsWith("pod-3:")).map((e) => e.incarnation))
      for (const incarnation of stoppedPods) {
        const started = new Set(events.filter((e) => e.incarnation === incarnation && e.event === "start").map((e) => e.entity_id))
        const stopped = new Set(events.filter((e) => e.incarnation === incarnation && e.event === "stop").map((e) => e.entity_id))
        expect([...started].filter((id) => !stopped.has(id))).toEqual([])
      }
    }).pipe(Effect.scoped, Effect.provide(pgClientLayer), Effect.orDie), { timeout: 120_000 })

  it.live("kill -9 of the active manager mid-traffic with a standby on its own port: the standby takes over, assignments intact, pods keep serving, a new pod gets shards", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster
      const standby = yield* cluster.startManager("manager-2", cluster.standbyPort)
      yield* standby.waitFor(/waiting for the manager lease/)
      // The standby serves its port from the start, as a standby: not ready.
      yield* eventuallyLive(Effect.map(healthOf(cluster.standbyPort), (status) => status === 503), 30_000)
      expect(yield* healthOf(cluster.managerPort)).toBe(200)
      const pods = yield* cluster.startPods(["pod-1", "pod-2"])
      yield* cluster.balancedOn(pods)
      yield* warmUp(cluster)
      const before = yield* cluster.assignment
      const [active] = yield* Ref.get(cluster.managers)
      const { outcomes } = yield* withTraffic(
        cluster,
        Effect.gen(function*() {
          yield* active!.signal("SIGKILL")
          yield* active!.awaitExit()
          yield* standby.waitFor(/listening on .* \(term 2\)/, 60_000)
          expect(yield* healthOf(cluster.standbyPort)).toBe(200)
          // Resumed from storage: nothing moved.
          expect(yield* cluster.assignment).toEqual(before)
          // The pods (given both managers) renew with the new one and serve every entity.
          const mark = (yield* cluster.events).length
          yield* eventuallyLive(
            Effect.map(cluster.events, (events) =>
              entityIds.every((id) => events.slice(mark).some((e) => e.entity_id === id && e.event === "msg"))),
            30_000
          )
          // The new manager rebalances: a pod joining now gets its share (after the restart quiet period).
          const [joined] = yield* cluster.startPods(["pod-3"])
          yield* cluster.balancedOn([...pods, joined!], 60_000)
          const later = (yield* cluster.events).length
          yield* eventuallyLive(
            Effect.map(cluster.events, (events) =>
              entityIds.every((id) => events.slice(later).some((e) => e.entity_id === id && e.event === "msg"))),
            30_000
          )
        })
      )
      const after = yield* cluster.assignment
      // Shards moved only to the joining pod; none between the pods that were there.
      for (const [shard, port] of before) {
        const now = after.get(shard)
        expect(now === port || !pods.some((pod) => pod.port === now)).toBe(true)
      }
      const counts = summary(outcomes)
      expect(counts.untyped).toEqual([])
      expect(counts.typed).toBe(0)
      expect(counts.ok).toBeGreaterThan(0)
      yield* expectSingleOwner(cluster)
    }).pipe(Effect.scoped, Effect.provide(pgClientLayer), Effect.orDie), { timeout: 150_000 })

  // Pods renew their shards' leases in the database (test/process/podChild.ts provides
  // `StorageSql.layerPodLeases`), so a manager outage stops rebalancing, not traffic. A 3 s lease, so that
  // "longer than two leases" stays short.
  it.live("the manager killed for longer than two leases: every send succeeds; restarted, it resumes without reshuffling and hands out no shard before lease + margin", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const cluster = yield* makeClusterWith(shortTiming)
      const lease = shortTiming.leaseDuration
      const margin = shortTiming.leaseMargin
      const pods = yield* cluster.startPods(["pod-1", "pod-2"])
      yield* cluster.balancedOn(pods)
      yield* warmUp(cluster)
      for (const pod of pods) expect((yield* entitiesOf(cluster, pod)).length).toBeGreaterThan(0)
      const epochs = Effect.orDie(Effect.map(
        sql<{ shard_id: number; epoch: number }>`SELECT shard_id, epoch FROM ${sql(`${cluster.prefix}_shards`)}`,
        (rows) => new Map(rows.map((row) => [Number(row.shard_id), Number(row.epoch)]))
      ))
      const before = yield* cluster.assignment
      const epochsBefore = yield* epochs
      const [manager] = yield* Ref.get(cluster.managers)
      const { outcomes, result } = yield* withTraffic(
        cluster,
        Effect.gen(function*() {
          yield* manager!.signal("SIGKILL")
          yield* manager!.awaitExit()
          const killedAt = Date.now()
          const outageStart = (yield* cluster.events).length
          // The outage lasts until every entity has handled a message begun more than two leases (and a
          // margin) after the kill: polled, bounded.
          yield* eventuallyLive(
            Effect.map(cluster.events, (events) =>
              entityIds.every((id) =>
                events.some((e) => e.entity_id === id && e.event === "msg" && e.at > killedAt + 2 * lease + margin)
              )),
            60_000
          ).pipe(Effect.tapDefect(() =>
            Effect.sync(() => {
              for (const pod of pods) console.log(pod.child.describe())
            })
          ))
          const outage = (yield* cluster.events).slice(outageStart)
          // Nothing moved while the manager was away.
          expect(yield* cluster.assignment).toEqual(before)
          // The restarted manager starts once it holds the manager lease: the poller finds when its term
          // changed (after the start of the last read that saw the old one), and from then until lease +
          // margin later every read of the assignment that ended by then must find it as it was, though a
          // third pod joins meanwhile (started beforehand, it registers as soon as the manager listens).
          const termOf = Effect.orDie(Effect.map(
            sql<{ term: number }>`SELECT term FROM ${sql(`${cluster.prefix}_manager_lease`)}`,
            (rows) => Number(rows[0]?.term ?? 0)
          ))
          const oldTerm = yield* termOf
          let quietFrom = 0
          const quietUntil = () => quietFrom + lease + margin
          const poller = yield* Effect.fork(Effect.gen(function*() {
            const deadline = Date.now() + 60_000
            for (;;) {
              const readStart = Date.now()
              if ((yield* termOf) !== oldTerm) break
              quietFrom = readStart
              if (Date.now() > deadline) return yield* Effect.dieMessage("the restarted manager never took the lease")
              yield* Effect.sleep("25 millis")
            }
            const changed: Array<string> = []
            let reads = 0
            while (Date.now() < quietUntil()) {
              const seen = yield* cluster.assignment
              if (Date.now() < quietUntil()) {
                reads++
                for (const [shard, port] of seen) {
                  if (before.get(shard) !== port) changed.push(`shard ${shard} on ${port} at +${Date.now() - quietFrom} ms`)
                }
              }
              yield* Effect.sleep("25 millis")
            }
            return { changed, reads }
          }))
          const [joined] = yield* cluster.startPods(["pod-3"], Effect.gen(function*() {
            const restarted = yield* cluster.startManager("manager-restarted")
            yield* restarted.waitFor(/listening on/, 60_000)
          }))
          const registeredAt = Date.now()
          const quiet = yield* Fiber.join(poller)
          // A pod joining the restarted manager gets its share once that time is over.
          yield* cluster.balancedOn([...pods, joined!], 60_000)
          return { outage, quiet, joined: joined!, registeredEarly: registeredAt < quietUntil(), registeredAfter: registeredAt - quietFrom }
        })
      )
      const counts = summary(outcomes)
      expect(counts.untyped).toEqual([])
      expect(counts.typed).toBe(0)
      expect(counts.ok).toBeGreaterThan(0)
      // During the outage no entity stopped or started anywhere: the pods kept their shards and instances.
      expect(result.outage.filter((e) => e.event === "start" || e.event === "stop")).toEqual([])
      expect(new Set(result.outage.filter((e) => e.event === "msg").map((e) => e.incarnation)))
        .toEqual(new Set(pods.map((pod) => pod.incarnation)))
      // No reshuffle: a shard either stayed where it was, at the same epoch, or moved to the joining pod.
      const after = yield* cluster.assignment
      const epochsAfter = yield* epochs
      for (const [shard, port] of before) {
        const now = after.get(shard)
        expect(now === port || now === result.joined.port).toBe(true)
        if (now === port) expect(epochsAfter.get(shard)).toBe(epochsBefore.get(shard))
      }
      expect(Array.from(after.values()).filter((port) => port === result.joined.port).length).toBeGreaterThan(0)
      // Nothing was handed out before lease + margin from the restart (the reads saw no change), though the
      // joining pod had registered by then (a manager that did not wait would have given it shards at once).
      expect(result.quiet.changed).toEqual([])
      expect(result.quiet.reads).toBeGreaterThan(0)
      expect(result.registeredEarly, `pod-3 registered ${result.registeredAfter} ms after the manager took over`).toBe(true)
      yield* expectSingleOwner(cluster)
    }).pipe(Effect.scoped, Effect.provide(pgClientLayer), Effect.orDie), { timeout: 120_000 })
})
