/**
 * Network transport benchmark: `pnpm exec tsx --conditions=source bench/network.ts`. Prints a markdown
 * table.
 *
 * A shard manager and two pods in this process, talking over real loopback sockets through the network
 * layers (`NodeCluster.layerManager`/`layerPod`: websocket rpc, ndjson, per-pod connection, batched
 * sends). Pod 1 takes every shard, then pod 2 joins; once they hold half each, pod 2 sends to 1,000
 * `fromFunctionEffect` entities on shards pod 1 holds, from 1 and from 64 concurrent fibers. Each send is a full round trip: the body encoded with the
 * message schema, the envelope over the socket, the reply (the encoded `Exit`) back and decoded. Both
 * pods share one event loop here, so a send pays for both ends on one core. "Sends per CPU-second" divides
 * by the CPU time this process used (both ends), a figure less sensitive to other load on the machine than
 * wall-clock sends/s.
 */
import { Message, MessageState, RecipientBehaviour, RecipientType, Sharding, Storage } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as HttpServer from "@effect/platform/HttpServer"
import { Context, Duration, Effect, Exit, Layer, Logger, LogLevel, Schema } from "effect"

class Ping extends Message.TaggedMessage<Ping>()("Ping", Schema.Never, Schema.Number, { id: Schema.String, n: Schema.Number }, (_) => _.id) {}
const Pinger = RecipientType.makeEntityType("Pinger", Ping)
const behaviour = RecipientBehaviour.fromFunctionEffect((_entityId: string, message: Ping) =>
  Effect.succeed(MessageState.Processed(Exit.succeed(message.n + 1)))
)

const numberOfShards = 300
const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const portOf = (context: Context.Context<HttpServer.HttpServer>) => {
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "TcpAddress" ? address.port : 0
}

// `count` sends split over `concurrency` fibers, each sending its share one after the other.
const measure = (send: (i: number, message: Ping) => Effect.Effect<number, unknown>, count: number, concurrency: number) =>
  Effect.gen(function*() {
    const messages = Array.from({ length: count }, (_, i) => new Ping({ id: `run-${i}-${Math.random()}`, n: i }))
    const latencies = new Float64Array(count)
    const perFiber = Math.ceil(count / concurrency)
    const cpuBefore = process.cpuUsage()
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: concurrency }, (_, f) => f),
      (f) =>
        Effect.gen(function*() {
          for (let i = f * perFiber; i < Math.min(count, (f + 1) * perFiber); i++) {
            const t = performance.now()
            yield* send(i, messages[i]!)
            latencies[i] = performance.now() - t
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    const seconds = (performance.now() - start) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    latencies.sort()
    return {
      perSecond: count / seconds,
      perCpuSecond: count / ((cpu.user + cpu.system) / 1e6),
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99)
    }
  })

const program = Effect.gen(function*() {
  const managerContext = yield* Layer.build(
    NodeCluster.layerManager({ manager: { apiPort: 0, numberOfShards, rebalanceInterval: Duration.hours(1) } }).pipe(Layer.provide(Storage.memory))
  )
  const shardManagerUri = `http://127.0.0.1:${portOf(managerContext)}`
  const owner = Context.get(
    yield* Layer.build(NodeCluster.layerPod({ sharding: { numberOfShards, shardingPort: 0, shardManagerUri } })),
    Sharding.Sharding
  )
  yield* owner.registerEntity(Pinger)(behaviour)
  yield* owner.registerScoped
  while ((yield* owner.getAssignedShardIds).pipe((set) => Array.from(set).length) < numberOfShards) {
    yield* Effect.sleep("20 millis")
  }
  const sender = Context.get(
    yield* Layer.build(NodeCluster.layerPod({ sharding: { numberOfShards, shardingPort: 0, shardManagerUri } })),
    Sharding.Sharding
  )
  yield* sender.registerEntity(Pinger)(behaviour)
  yield* sender.registerScoped
  // The manager's follow-up rounds give the sender half the shards; measure once they are over.
  const held = (pod: Sharding.Sharding) => Effect.map(pod.getAssignedShardIds, (set) => Array.from(set).length)
  while (true) {
    const [a, b] = [yield* held(owner), yield* held(sender)]
    if (a + b === numberOfShards && Math.abs(a - b) <= 1) break
    yield* Effect.sleep("50 millis")
  }
  // Entities on shards pod 1 holds: every send crosses the network.
  const ownerShards = new Set(Array.from(yield* owner.getAssignedShardIds, (shard) => shard.value))
  const entities: Array<string> = []
  for (let i = 0; entities.length < 1000; i++) {
    if (ownerShards.has(owner.getShardId(`e${i}`).value)) entities.push(`e${i}`)
  }
  const messenger = sender.messenger(Pinger)
  const send = (i: number, message: Ping) => messenger.send(entities[i % 1000]!)(message)
  yield* measure(send, 20_000, 64) // warm-up: connections, JIT, entities
  const rows: Array<string> = []
  for (const [concurrency, count] of [[1, 20_000], [64, 200_000]] as const) {
    const result = yield* measure(send, count, concurrency)
    rows.push(
      `| cross-pod send over loopback, ${concurrency} sender${concurrency > 1 ? "s" : ""} | ${
        Math.round(result.perSecond).toLocaleString("en-US")
      } | ${Math.round(result.perCpuSecond).toLocaleString("en-US")} | ${result.p50.toFixed(3)} | ${result.p99.toFixed(3)} |`
    )
  }
  console.log("| network transport (websocket rpc, 2 pods, 1 process) | sends/s | sends per CPU-second | p50 ms | p99 ms |")
  console.log("|---|---:|---:|---:|---:|")
  for (const row of rows) console.log(row)
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
