import { Message, RecipientBehaviour, RecipientType, Sharding, ShardingException, Storage } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Duration, Effect, Exit, FastCheck, Fiber, Layer, Option, Queue, Schema, TestClock } from "effect"
import { makeTestCluster, settle, type TestPod } from "./utils/cluster.js"
import { Counter, counterBehaviour, freshId, Increment } from "./utils/counter.js"
import { Observer } from "./utils/observer.js"

class Job extends Message.TaggedMessage<Job>()(
  "Job",
  Schema.Never,
  Schema.String,
  { id: Schema.String, seconds: Schema.Number },
  (_) => _.id
) {}
const Jobs = RecipientType.makeEntityType("Jobs", Job)
const SINGLETONS = ["singleton-a", "singleton-b", "singleton-c"]

/**
 * What every pod runs, reporting to the observers: counters whose handler takes `by - 1` seconds (slow when
 * `by > 1`), mailbox entities taking `seconds` per job, and singletons with a one-second clean-up. Each
 * handled message is recorded with the instance that handled it, to find a primary key handled twice by one
 * instance (a retry must get the stored reply).
 */
class World {
  readonly counters = new Observer()
  readonly mailboxes = new Observer()
  readonly singletons = new Observer()
  readonly handled = new Map<string, number>()
  readonly duplicates: Array<string> = []
  instances = 0
  readonly current = new Map<string, number>()

  record(instance: string, key: string): void {
    const seen = `${instance} ${key}`
    const count = (this.handled.get(seen) ?? 0) + 1
    this.handled.set(seen, count)
    if (count > 1) this.duplicates.push(seen)
  }

  crash(pod: number): void {
    this.counters.crash(pod)
    this.mailboxes.crash(pod)
    this.singletons.crash(pod)
  }

  get violations(): Array<string> {
    return [...this.counters.violations, ...this.mailboxes.violations, ...this.singletons.violations, ...this.duplicates]
  }

  setup(pod: number): Effect.Effect<void, never, Sharding.Sharding> {
    const world = this
    return Effect.gen(function*() {
      yield* Sharding.registerEntity(Counter)(counterBehaviour({
        onStart: (entityId) =>
          Effect.sync(() => {
            world.counters.start(pod, entityId)
            world.current.set(`${entityId}@${pod}`, world.instances++)
          }),
        onStop: (entityId) => Effect.sync(() => world.counters.stop(pod, entityId)),
        onMessage: (entityId, message) =>
          message._tag === "Increment"
            ? Effect.zipRight(
              Effect.sync(() =>
                world.record(`${entityId}@${pod}#${world.current.get(`${entityId}@${pod}`)}`, message.messageId)
              ),
              message.by > 1 ? Effect.sleep(Duration.seconds(message.by - 1)) : Effect.void
            )
            : Effect.void
      }))
      yield* Sharding.registerEntity(Jobs)(RecipientBehaviour.fromInMemoryQueue((entityId, dequeue, processed) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            world.mailboxes.start(pod, entityId)
            return `${entityId}@${pod}#${world.instances++}`
          }),
          () => Effect.sync(() => world.mailboxes.stop(pod, entityId))
        ).pipe(
          Effect.flatMap((instance) =>
            Effect.forever(Effect.gen(function*() {
              const message = yield* Queue.take(dequeue)
              if (message._tag !== "Job") return yield* Effect.interrupt
              world.record(instance, message.id)
              yield* Effect.sleep(Duration.seconds(message.seconds))
              yield* processed(message, Option.some(Exit.succeed(message.id)))
            }))
          ),
          Effect.scoped
        )
      ))
      yield* Effect.forEach(SINGLETONS, (name) =>
        Sharding.registerSingleton(
          name,
          Effect.acquireRelease(
            Effect.sync(() => world.singletons.start(pod, name)),
            () => Effect.zipRight(Effect.sleep("1 second"), Effect.sync(() => world.singletons.stop(pod, name)))
          ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
        ), { discard: true })
    })
  }
}

type Action =
  | { readonly _tag: "Join" }
  | { readonly _tag: "Leave"; readonly pod: number }
  | { readonly _tag: "Crash"; readonly pod: number }
  | { readonly _tag: "Partition"; readonly pod: number }
  | { readonly _tag: "Heal"; readonly pod: number }
  | { readonly _tag: "RestartManager"; readonly downSeconds: number }
  | { readonly _tag: "Send"; readonly pod: number; readonly entity: number }
  | { readonly _tag: "SendSlow"; readonly pod: number; readonly entity: number; readonly seconds: number }
  | { readonly _tag: "SendJob"; readonly pod: number; readonly entity: number; readonly seconds: number }
  | { readonly _tag: "SendWithTimeout"; readonly pod: number; readonly entity: number; readonly timeout: number }
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
  FastCheck.record({ _tag: FastCheck.constant("Advance" as const), seconds: FastCheck.integer({ min: 1, max: 40 }) }),
  FastCheck.record({
    _tag: FastCheck.constant("SendSlow" as const),
    pod,
    entity: FastCheck.nat(15),
    seconds: FastCheck.integer({ min: 1, max: 6 })
  }),
  FastCheck.record({
    _tag: FastCheck.constant("SendJob" as const),
    pod,
    entity: FastCheck.nat(7),
    seconds: FastCheck.integer({ min: 0, max: 3 })
  }),
  FastCheck.record({
    _tag: FastCheck.constant("SendWithTimeout" as const),
    pod,
    entity: FastCheck.nat(15),
    timeout: FastCheck.integer({ min: 1, max: 4 })
  })
)

const NUMBER_OF_SHARDS = 30
const MAX_PODS = 4

describe("Cluster under random schedules", () => {
  it.scoped.prop(
    "never runs an entity, mailbox or singleton on two pods, handles a primary key once per instance, answers every message or fails it typed, and ends assigned and balanced",
    {
      schedule: FastCheck.array(action, { minLength: 3, maxLength: 12 }),
      storageWriteSeconds: FastCheck.integer({ min: 0, max: 2 })
    },
    ({ schedule, storageWriteSeconds }) =>
      Effect.gen(function*() {
        const world = new World()
        const suspend = <A, E>(write: Effect.Effect<A, E>) =>
          storageWriteSeconds === 0 ? write : Effect.zipRight(Effect.sleep(Duration.seconds(storageWriteSeconds)), write)
        const memory = Context.get(yield* Layer.build(Storage.memory), Storage.Storage)
        const saveAll = memory.saveAll
        const cluster = yield* makeTestCluster({
          numberOfShards: NUMBER_OF_SHARDS,
          manager: { rebalanceRate: 1 },
          // Fewer, coarser retries keep each schedule cheap (every retry is a TestClock wake-up).
          pod: { sendRetryInterval: Duration.seconds(1) },
          // A storage whose writes suspend, as a database's do.
          storage: {
            ...memory,
            saveAssignments: (assignments) => suspend(memory.saveAssignments(assignments)),
            savePods: (pods) => suspend(memory.savePods(pods)),
            saveEpochs: (epochs) => suspend(memory.saveEpochs(epochs)),
            ...(saveAll === undefined ? {} : { saveAll: (state) => suspend(saveAll(state)) })
          }
        })
        // Runs a cluster operation to its end while the clock moves on: with a storage whose writes suspend and
        // clean-ups that take time, joining, leaving, crashing and restarting the manager all wait for the clock.
        const drive = <A>(effect: Effect.Effect<A>) =>
          Effect.gen(function*() {
            const fiber = yield* Effect.fork(effect)
            yield* settle
            for (let i = 0; i < 600 && Option.isNone(yield* Fiber.poll(fiber)); i++) {
              yield* TestClock.adjust("1 second")
              yield* settle
            }
            return yield* Fiber.join(fiber)
          })
        yield* drive(cluster.startManager)
        let nextPort = 1
        const live: Array<TestPod & { port: number }> = []
        const partitioned = new Set<number>()
        const sends: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
        const join = Effect.gen(function*() {
          const port = nextPort++
          const started = yield* cluster.startPod(port, world.setup(port))
          live.push({ ...started, port })
        })
        yield* drive(join)
        yield* drive(join)

        for (const step of schedule) {
          const target = live.length > 0 ? live[step._tag === "Join" || step._tag === "Advance" || step._tag === "RestartManager" ? 0 : step.pod % live.length] : undefined
          switch (step._tag) {
            case "Join":
              if (live.length < MAX_PODS) yield* drive(join)
              break
            case "Leave":
              if (target) {
                live.splice(live.indexOf(target), 1)
                yield* drive(target.leave)
              }
              break
            case "Crash":
              if (target) {
                live.splice(live.indexOf(target), 1)
                world.crash(target.port)
                yield* drive(target.crash)
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
              yield* drive(cluster.stopManager)
              yield* TestClock.adjust(`${step.downSeconds} seconds`)
              yield* drive(cluster.startManager)
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
            case "SendSlow":
              if (target) {
                sends.push(
                  yield* Effect.fork(
                    target.sharding.messenger(Counter).send(`entity-${step.entity}`)(
                      new Increment({ messageId: freshId(), by: step.seconds + 1 })
                    )
                  )
                )
              }
              break
            case "SendJob":
              if (target) {
                sends.push(
                  yield* Effect.fork(
                    target.sharding.messenger(Jobs).send(`job-entity-${step.entity}`)(
                      new Job({ id: freshId("job"), seconds: step.seconds })
                    )
                  )
                )
              }
              break
            case "SendWithTimeout":
              if (target) {
                // A caller that gives up after `timeout` seconds and sends the same message again.
                const messenger = target.sharding.messenger(Counter)
                const message = new Increment({ messageId: freshId(), by: 3 })
                const send = messenger.send(`entity-${step.entity}`)(message)
                sends.push(
                  yield* Effect.fork(
                    Effect.catchTag(Effect.timeout(send, Duration.seconds(step.timeout)), "TimeoutException", () => send)
                  )
                )
              }
              break
            case "Advance":
              yield* TestClock.adjust(`${step.seconds} seconds`)
              break
          }
          yield* settle
          expect(world.violations).toEqual([])
        }

        // Churn stops: heal everything, make sure someone is alive, and let leases and rounds play out.
        for (const pod of live) yield* cluster.transport.heal(pod.address)
        if (live.length === 0) yield* drive(join)
        for (let i = 0; i < 8; i++) {
          yield* TestClock.adjust("15 seconds")
          yield* settle
        }
        expect(world.violations).toEqual([])

        // Every message got a reply or a typed error.
        for (const fiber of sends) {
          const exit = yield* Fiber.poll(fiber)
          expect(Option.isSome(exit)).toBe(true)
          const result = (exit as Option.Some<Exit.Exit<unknown, unknown>>).value
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

        // Shut down while the clock moves (the scope's own close would wait for a clock nobody moves).
        yield* drive(Effect.forEach(live, (pod) => pod.leave, { discard: true }))
        yield* drive(cluster.stopManager)
        expect(world.violations).toEqual([])
      }),
    { fastCheck: { numRuns: 150 }, timeout: 900_000 }
  )
})
