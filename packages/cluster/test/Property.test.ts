import { ShardingException } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, FastCheck, Fiber, Option, TestClock } from "effect"
import { makeTestCluster, settle, type TestPod } from "./utils/cluster.js"
import { Counter, freshId, Increment } from "./utils/counter.js"
import { Observer } from "./utils/observer.js"

type Action =
  | { readonly _tag: "Join" }
  | { readonly _tag: "Leave"; readonly pod: number }
  | { readonly _tag: "Crash"; readonly pod: number }
  | { readonly _tag: "Partition"; readonly pod: number }
  | { readonly _tag: "Heal"; readonly pod: number }
  | { readonly _tag: "RestartManager"; readonly downSeconds: number }
  | { readonly _tag: "Send"; readonly pod: number; readonly entity: number }
  | { readonly _tag: "Advance"; readonly seconds: number }

const pod = FastCheck.nat(9)
const action: FastCheck.Arbitrary<Action> = FastCheck.oneof(
  FastCheck.constant({ _tag: "Join" as const }),
  FastCheck.record({ _tag: FastCheck.constant("Leave" as const), pod }),
  FastCheck.record({ _tag: FastCheck.constant("Crash" as const), pod }),
  FastCheck.record({ _tag: FastCheck.constant("Partition" as const), pod }),
  FastCheck.record({ _tag: FastCheck.constant("Heal" as const), pod }),
  FastCheck.record({ _tag: FastCheck.constant("RestartManager" as const), downSeconds: FastCheck.integer({ min: 0, max: 45 }) }),
  FastCheck.record({ _tag: FastCheck.constant("Send" as const), pod, entity: FastCheck.nat(15) }),
  FastCheck.record({ _tag: FastCheck.constant("Send" as const), pod, entity: FastCheck.nat(15) }),
  FastCheck.record({ _tag: FastCheck.constant("Advance" as const), seconds: FastCheck.integer({ min: 1, max: 40 }) })
)

const NUMBER_OF_SHARDS = 30
const MAX_PODS = 4

describe("Cluster under random schedules", () => {
  it.scoped.prop(
    "never runs an entity on two pods, answers every message or fails it typed, and ends assigned and balanced",
    { schedule: FastCheck.array(action, { minLength: 3, maxLength: 12 }) },
    ({ schedule }) =>
      Effect.gen(function*() {
        const observer = new Observer()
        const cluster = yield* makeTestCluster({
          numberOfShards: NUMBER_OF_SHARDS,
          manager: { rebalanceRate: 1 },
          // Fewer, coarser retries keep each schedule cheap (every retry is a TestClock wake-up).
          pod: { sendRetryInterval: Duration.seconds(1) }
        })
        yield* cluster.startManager
        let nextPort = 1
        const live: Array<TestPod & { port: number }> = []
        const partitioned = new Set<number>()
        const sends: Array<Fiber.RuntimeFiber<number, unknown>> = []
        const join = Effect.gen(function*() {
          const port = nextPort++
          const started = yield* cluster.startPod(port, observer.counterOn(port))
          live.push({ ...started, port })
        })
        yield* join
        yield* join

        for (const step of schedule) {
          const target = live.length > 0 ? live[step._tag === "Join" || step._tag === "Advance" || step._tag === "RestartManager" ? 0 : step.pod % live.length] : undefined
          switch (step._tag) {
            case "Join":
              if (live.length < MAX_PODS) yield* join
              break
            case "Leave":
              if (target) {
                live.splice(live.indexOf(target), 1)
                yield* target.leave
              }
              break
            case "Crash":
              if (target) {
                live.splice(live.indexOf(target), 1)
                observer.crash(target.port)
                yield* target.crash
              }
              break
            case "Partition":
              if (target) {
                partitioned.add(target.port)
                yield* cluster.transport.partitionFromManager(target.address)
              }
              break
            case "Heal":
              if (target) {
                partitioned.delete(target.port)
                yield* cluster.transport.heal(target.address)
              }
              break
            case "RestartManager":
              yield* cluster.stopManager
              yield* TestClock.adjust(`${step.downSeconds} seconds`)
              yield* cluster.startManager
              break
            case "Send":
              if (target) {
                sends.push(
                  yield* Effect.fork(
                    target.sharding.messenger(Counter).send(`entity-${step.entity}`)(
                      new Increment({ messageId: freshId(), by: 1 })
                    )
                  )
                )
              }
              break
            case "Advance":
              yield* TestClock.adjust(`${step.seconds} seconds`)
              break
          }
          yield* settle
          expect(observer.violations).toEqual([])
        }

        // Churn stops: heal everything, make sure someone is alive, and let leases and rounds play out.
        for (const pod of live) yield* cluster.transport.heal(pod.address)
        if (live.length === 0) yield* join
        for (let i = 0; i < 8; i++) {
          yield* TestClock.adjust("15 seconds")
          yield* settle
        }
        expect(observer.violations).toEqual([])

        // Every message got a reply or a typed error.
        for (const fiber of sends) {
          const exit = yield* Fiber.poll(fiber)
          expect(Option.isSome(exit)).toBe(true)
          const result = (exit as Option.Some<Exit.Exit<number, unknown>>).value
          if (Exit.isFailure(result)) {
            const failure = Cause.failureOption(result.cause)
            expect(Option.isSome(failure) && ShardingException.isShardingException(failure.value)).toBe(true)
          }
        }

        // All shards assigned to live pods, balanced within one shard, and each pod agrees with the manager.
        const table = yield* cluster.managerInstance()!.getShardAssignments
        const livePorts = live.map((pod) => pod.port)
        for (const row of table) expect(row.pod !== null && livePorts.includes(row.pod.port)).toBe(true)
        const counts = livePorts.map((port) => table.filter((row) => row.pod?.port === port).length)
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1)
        for (const pod of live) {
          const held = Array.from(yield* pod.sharding.getAssignedShardIds, (shard) => shard.value).sort((a, b) => a - b)
          const expected = table.filter((row) => row.pod?.port === pod.port).map((row) => row.shardId)
          expect(held).toEqual(expected)
        }
      }),
    { fastCheck: { numRuns: 200 }, timeout: 240_000 }
  )
})
