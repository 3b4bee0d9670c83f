/**
 * Cluster benchmark: `pnpm exec tsx --conditions=source bench/cluster.ts`. Prints a markdown table.
 *
 * - local send: one pod (ShardManagerClient.local), `send` to 1,000 `fromFunctionEffect` entities from one
 *   fiber; the local path does not serialize.
 * - cross-pod send: two in-process pods and a manager, serialization forced on (envelope, body and reply
 *   through JSON), `send` from pod 1 to entities owned by pod 2.
 * - memory per idle entity: 100,000 entities alive (each received one message), heap growth / 100,000.
 * - rebalance: a pod joins a 10-pod cluster of 300 shards with 3,000 live entities; wall time until the
 *   assignments are balanced (rebalanceRate 1: one round), and how many shards moved.
 */
import {
  InProcessTransport,
  Message,
  MessageState,
  Pods,
  RecipientBehaviour,
  RecipientType,
  Serialization,
  Sharding,
  ShardingConfig,
  ShardManager,
  ShardManagerClient,
  Storage
} from "@effect-cluster/cluster"
import { Context, Duration, Effect, Exit, Layer, Schema, Scope } from "effect"
import * as v8 from "node:v8"
import * as vm from "node:vm"

class Ping extends Message.TaggedMessage<Ping>()("Ping", Schema.Never, Schema.Number, { id: Schema.String, n: Schema.Number }, (_) => _.id) {}
const Pinger = RecipientType.makeEntityType("Pinger", Ping)
const behaviour = RecipientBehaviour.fromFunctionEffect((_entityId: string, message: Ping) =>
  Effect.succeed(MessageState.Processed(Exit.succeed(message.n + 1)))
)

v8.setFlagsFromString("--expose_gc")
const gc: () => void = vm.runInNewContext("gc")
const heapUsed = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

// Messages are built before the clock starts (constructing a validated Schema class costs ~2 µs and is
// the caller's work, not the cluster's); each has its own primary key, so nothing is deduplicated. A full
// GC runs before the clock starts, so that neither promoting those messages nor the garbage of a previous
// row is counted in this row.
const measureSends = (send: (i: number, message: Ping) => Effect.Effect<number, unknown>, count: number) =>
  Effect.gen(function*() {
    const warmUp = Math.min(count, 20_000)
    for (let i = 0; i < warmUp; i++) yield* send(i, new Ping({ id: `warm-${i}-${Math.random()}`, n: i }))
    const messages = Array.from({ length: count }, (_, i) => new Ping({ id: `run-${i}-${Math.random()}`, n: i }))
    const latencies = new Float64Array(count)
    heapUsed()
    const start = performance.now()
    for (let i = 0; i < count; i++) {
      const t = performance.now()
      yield* send(i, messages[i]!)
      latencies[i] = performance.now() - t
    }
    const seconds = (performance.now() - start) / 1000
    latencies.sort()
    return { perSecond: count / seconds, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) }
  })

const singlePod = (config: Partial<ShardingConfig.ShardingConfig>) =>
  Sharding.live.pipe(
    Layer.provide(Pods.noop),
    Layer.provide(ShardManagerClient.local),
    Layer.provide(Serialization.json),
    Layer.provide(ShardingConfig.withDefaults(config))
  )

const local = Effect.gen(function*() {
  const sharding = yield* Sharding.Sharding
  yield* sharding.register
  yield* sharding.registerEntity(Pinger)(behaviour)
  const messenger = sharding.messenger(Pinger)
  return yield* measureSends((i, message) => messenger.send(`e${i % 1000}`)(message), 300_000)
}).pipe(Effect.provide(singlePod({})), Effect.scoped)

const memory = Effect.gen(function*() {
  const sharding = yield* Sharding.Sharding
  yield* sharding.register
  yield* sharding.registerEntity(Pinger)(behaviour)
  const messenger = sharding.messenger(Pinger)
  const count = 100_000
  const before = heapUsed()
  for (let i = 0; i < count; i++) yield* messenger.send(`idle-${i}`)(new Ping({ id: `x${i}`, n: i }))
  const alive = yield* sharding.localEntityCount
  const after = heapUsed()
  return { alive, bytesPerEntity: (after - before) / count }
}).pipe(
  Effect.provide(singlePod({ maxEntitiesPerPod: 200_000, entityMaxIdleTime: Duration.hours(1) })),
  Effect.scoped
)

const cluster = (podCount: number, managerConfig: Parameters<typeof InProcessTransport.layerManager>[0]) =>
  Effect.gen(function*() {
    const outer = yield* Effect.scope
    const shared = yield* Layer.build(Layer.merge(InProcessTransport.layer({ serialize: true }), Storage.memory))
    const managerContext = yield* Layer.build(
      InProcessTransport.layerManager(managerConfig).pipe(Layer.provide(Layer.succeedContext(shared)))
    )
    const manager = Context.get(managerContext, ShardManager.ShardManager)
    const startPod = (port: number) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer, undefined as never)
        const context = yield* Layer.buildWithScope(
          InProcessTransport.layerPod({ shardingPort: port }).pipe(Layer.provide(Layer.succeedContext(shared))),
          scope
        )
        const sharding = Context.get(context, Sharding.Sharding)
        yield* sharding.registerEntity(Pinger)(behaviour)
        yield* sharding.register
        return sharding
      })
    const balanced = (ports: ReadonlyArray<number>) =>
      Effect.gen(function*() {
        for (;;) {
          const table = yield* manager.getShardAssignments
          const counts = ports.map((port) => table.filter((row) => row.pod?.port === port).length)
          if (
            table.every((row) => row.pod !== null) && Math.max(...counts) - Math.min(...counts) <= 1 &&
            Math.min(...counts) > 0
          ) return table
          yield* Effect.sleep("1 millis")
        }
      })
    const pods: Array<Sharding.Sharding> = []
    for (let port = 1; port <= podCount; port++) pods.push(yield* startPod(port))
    yield* balanced(pods.map((_, i) => i + 1))
    return { pods, manager, startPod, balanced }
  })

const crossPod = Effect.gen(function*() {
  const { pods } = yield* cluster(2, { rebalanceRate: 1 })
  const [from, to] = pods as [Sharding.Sharding, Sharding.Sharding]
  const remote = new Set(Array.from(yield* to.getAssignedShardIds, (shard) => shard.value))
  const targets: Array<string> = []
  for (let i = 0; targets.length < 1000; i++) if (remote.has(from.getShardId(`r${i}`).value)) targets.push(`r${i}`)
  const messenger = from.messenger(Pinger)
  return yield* measureSends((i, message) => messenger.send(targets[i % targets.length]!)(message), 60_000)
}).pipe(Effect.scoped)

const rebalance = Effect.gen(function*() {
  const { balanced, manager, pods, startPod } = yield* cluster(10, { rebalanceRate: 1 })
  const messenger = pods[0]!.messenger(Pinger)
  for (let i = 0; i < 3000; i++) yield* messenger.send(`live-${i}`)(new Ping({ id: `l${i}`, n: i }))
  const before = yield* manager.getShardAssignments
  const start = performance.now()
  yield* startPod(11)
  const after = yield* balanced(Array.from({ length: 11 }, (_, i) => i + 1))
  const millis = performance.now() - start
  const moved = after.filter((row, i) => row.pod?.port !== before[i]!.pod?.port).length
  return { millis, moved }
}).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  const localResult = yield* local
  const crossResult = yield* crossPod
  const memoryResult = yield* memory
  const rebalanceResult = yield* rebalance
  const ms = (value: number) => `${(value * 1000).toFixed(1)} µs`
  const rows = [
    "| measurement | result | target |",
    "|---|---|---|",
    `| local \`send\` (1 pod, fromFunctionEffect, 1 fiber) | ${Math.round(localResult.perSecond).toLocaleString("en-US")} msg/s, p50 ${ms(localResult.p50)}, p99 ${ms(localResult.p99)} | ≥ 100,000 msg/s |`,
    `| cross-pod \`send\` (2 in-process pods, JSON on) | ${Math.round(crossResult.perSecond).toLocaleString("en-US")} msg/s, p50 ${ms(crossResult.p50)}, p99 ${ms(crossResult.p99)} | ≥ 20,000 msg/s |`,
    `| memory per idle entity (${memoryResult.alive.toLocaleString("en-US")} alive) | ${Math.round(memoryResult.bytesPerEntity).toLocaleString("en-US")} bytes | < 2,048 bytes |`,
    `| rebalance when an 11th pod joins (300 shards, 3,000 entities, rebalanceRate 1) | ${rebalanceResult.millis.toFixed(1)} ms, ${rebalanceResult.moved} shards moved | one round |`
  ]
  console.log(`Node ${process.version}, ${process.arch}\n`)
  console.log(rows.join("\n"))
})

Effect.runPromise(program.pipe(Effect.withLogSpan("bench"), Effect.orDie)).catch((error) => {
  console.error(error)
  process.exit(1)
})
