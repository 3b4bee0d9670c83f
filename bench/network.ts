/**
 * Network transport benchmark: `pnpm exec tsx --conditions=source bench/network.ts`. Prints a markdown
 * table.
 *
 * A shard manager and two pods talking over real loopback sockets through the network layers
 * (`NodeCluster.layerManager`/`layerPod`: websocket rpc, ndjson, one connection per pod, batched sends),
 * in two set-ups: both pods in this process (they share one event loop, so a send pays for both ends on
 * one core), and the owning pod in a child process (cross-process: each end has its own event loop).
 * Pod 1 takes every shard, then pod 2 joins; once they hold half each, pod 2 sends to 1,000
 * `fromFunctionEffect` entities on shards pod 1 holds, from 1 and from 64 concurrent fibers. Each send is
 * a full round trip: the body encoded with the message schema, the envelope over the socket, the reply
 * (the encoded `Exit`) back and decoded. "Sends per CPU-second" divides by the CPU time both pods used
 * (this process, plus the child's in the cross-process set-up), a figure less sensitive to other load on
 * the machine than wall-clock sends/s; in the cross-process set-up, the CPU time per send of each pod
 * (the sending pod's process also holds the idle manager). The last rows repeat the cross-process set-up
 * with 64 senders, both processes started with Node options (docs/deployment.md, "Node options for busy
 * pods"): `--max-semi-space-size=64` (a larger young generation), then `--no-allocation-site-pretenuring`.
 */
import { Message, MessageState, RecipientBehaviour, RecipientType, Sharding, Storage } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as HttpServer from "@effect/platform/HttpServer"
import { Context, Duration, Effect, Exit, Layer, Logger, LogLevel, Schema } from "effect"
import { spawn } from "node:child_process"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"

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

const cpuMicros = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

/** CPU time (µs) of the pods outside this process, read before and after a measurement. */
type ExternalCpu = Effect.Effect<number>

// `count` sends split over `concurrency` fibers, each sending its share one after the other.
const measure = (
  send: (i: number, message: Ping) => Effect.Effect<number, unknown>,
  count: number,
  concurrency: number,
  externalCpu: ExternalCpu
) =>
  Effect.gen(function*() {
    const messages = Array.from({ length: count }, (_, i) => new Ping({ id: `run-${i}-${Math.random()}`, n: i }))
    const latencies = new Float64Array(count)
    const perFiber = Math.ceil(count / concurrency)
    const externalBefore = yield* externalCpu
    const cpuBefore = cpuMicros()
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
    const localCpu = cpuMicros() - cpuBefore
    const external = (yield* externalCpu) - externalBefore
    const cpu = localCpu + external
    latencies.sort()
    return {
      perSecond: count / seconds,
      perCpuSecond: count / (cpu / 1e6),
      senderMicros: localCpu / count,
      ownerMicros: external / count,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99)
    }
  })

const podLayer = (shardManagerUri: string) =>
  NodeCluster.layerPod({ sharding: { numberOfShards, shardingPort: 0, shardManagerUri } })

const heldBy = (pod: Sharding.Sharding) => Effect.map(pod.getAssignedShardIds, (set) => Array.from(set).length)

// A pod with the Pinger entity type, registered; waits until it holds `shards` shards or more.
const startPod = (shardManagerUri: string, shards: number) =>
  Effect.gen(function*() {
    const pod = Context.get(yield* Layer.build(podLayer(shardManagerUri)), Sharding.Sharding)
    yield* pod.registerEntity(Pinger)(behaviour)
    yield* pod.registerScoped
    while ((yield* heldBy(pod)) < shards) yield* Effect.sleep("20 millis")
    return pod
  })

// The owner in a child process: started, holding every shard, then answers "cpu" lines with its CPU time
// until its stdin closes.
const ownerChild = (shardManagerUri: string) =>
  Effect.gen(function*() {
    yield* startPod(shardManagerUri, numberOfShards)
    console.log("@bench ready")
    yield* Effect.async<void>((resume) => {
      const input = Readline.createInterface({ input: process.stdin })
      input.on("line", (line) => {
        if (line === "cpu") console.log(`@bench cpu ${cpuMicros()}`)
      })
      input.on("close", () => resume(Effect.void))
    })
  })

// Starts the owner in a child process; its CPU time is read over its stdin/stdout (lines marked "@bench ";
// anything else it prints goes to stderr).
const spawnOwner = (shardManagerUri: string) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--owner", shardManagerUri], {
          stdio: ["pipe", "pipe", "inherit"]
        })
      ),
      // Closing its stdin ends the child normally (so that `--cpu-prof` writes its profile too).
      (child) =>
        Effect.async<void>((resume) => {
          child.on("exit", () => resume(Effect.void))
          child.stdin.end()
        }).pipe(Effect.timeout("10 seconds"), Effect.ignore, Effect.ensuring(Effect.sync(() => child.kill("SIGKILL"))))
    )
    const waiting: Array<(line: string) => void> = []
    Readline.createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.startsWith("@bench ")) waiting.shift()?.(line.slice("@bench ".length))
      else console.error(line)
    })
    const nextLine = Effect.async<string>((resume) => void waiting.push((line) => resume(Effect.succeed(line))))
    const ready = yield* nextLine
    if (ready !== "ready") return yield* Effect.dieMessage(`the owner process said ${ready}`)
    const cpu: ExternalCpu = Effect.zipRight(
      Effect.sync(() => child.stdin.write("cpu\n")),
      Effect.map(nextLine, (line) => Number(line.slice("cpu ".length)))
    )
    return cpu
  })

/** The young-generation size the deployment page recommends for pods (`--max-semi-space-size`, MB). */
const tunedSemiSpace = 64

// One set-up: the manager and the sender here, the owner here or in a child; the rows of its table (for
// `runs`: concurrent senders and sends), labelled with `suffix`.
const runSetup = (crossProcess: boolean, runs: ReadonlyArray<readonly [number, number]>, suffix = "") =>
  Effect.gen(function*() {
    const managerContext = yield* Layer.build(
      NodeCluster.layerManager({ manager: { apiPort: 0, numberOfShards, rebalanceInterval: Duration.hours(1) } }).pipe(
        Layer.provide(Storage.memory)
      )
    )
    const shardManagerUri = `http://127.0.0.1:${portOf(managerContext)}`
    const externalCpu: ExternalCpu = crossProcess ? yield* spawnOwner(shardManagerUri) : Effect.succeed(0)
    const owner = crossProcess ? undefined : yield* startPod(shardManagerUri, numberOfShards)
    // The manager's follow-up rounds give the sender half the shards; measure once they are over.
    const sender = yield* startPod(shardManagerUri, 0)
    while (true) {
      const mine = yield* heldBy(sender)
      const theirs = owner === undefined ? numberOfShards - mine : yield* heldBy(owner)
      if (mine + theirs === numberOfShards && Math.abs(mine - theirs) <= 1) break
      yield* Effect.sleep("50 millis")
    }
    // Entities on shards the sender does not hold (the owner's): every send crosses the network.
    const senderShards = new Set(Array.from(yield* sender.getAssignedShardIds, (shard) => shard.value))
    const entities: Array<string> = []
    for (let i = 0; entities.length < 1000; i++) {
      if (!senderShards.has(sender.getShardId(`e${i}`).value)) entities.push(`e${i}`)
    }
    const messenger = sender.messenger(Pinger)
    const send = (i: number, message: Ping) => messenger.send(entities[i % 1000]!)(message)
    yield* measure(send, 20_000, 64, externalCpu) // warm-up: connections, JIT, entities
    const rows: Array<string> = []
    for (const [concurrency, count] of runs) {
      const result = yield* measure(send, count, concurrency, externalCpu)
      rows.push(
        `| ${crossProcess ? "2 processes" : "1 process"}, ${concurrency} sender${concurrency > 1 ? "s" : ""}${suffix} | ${
          Math.round(result.perSecond).toLocaleString("en-US")
        } | ${Math.round(result.perCpuSecond).toLocaleString("en-US")} | ${
          crossProcess ? `${result.senderMicros.toFixed(1)} / ${result.ownerMicros.toFixed(1)}` : "-"
        } | ${result.p50.toFixed(3)} | ${
          result.p99.toFixed(3)
        } |`
      )
    }
    return rows
  }).pipe(Effect.scoped)

const runs = [[1, 20_000], [64, 200_000]] as const

/**
 * The Node options of the last rows (docs/deployment.md, "Node options for busy pods"): the recommended young
 * generation, and V8's allocation-site pretenuring turned off (a site V8 has seen objects survive at, during
 * a burst such as start-up, allocates straight into the old generation; the sending pod's per-send objects
 * then keep young ones alive past each scavenge).
 */
const tunings: ReadonlyArray<ReadonlyArray<string>> = [
  [`--max-semi-space-size=${tunedSemiSpace}`],
  ["--no-allocation-site-pretenuring"]
]

// The cross-process set-up with 64 senders again, both pods run with `flags`: in a child process (a heap's
// options are fixed when the process starts), whose owner child inherits them.
const tunedRows = (flags: ReadonlyArray<string>) => Effect.async<Array<string>, Error>((resume) => {
  const child = spawn(
    process.execPath,
    [...process.execArgv, ...flags, fileURLToPath(import.meta.url), "--tuned", flags.join(" ")],
    { stdio: ["ignore", "pipe", "inherit"] }
  )
  let out = ""
  child.stdout.on("data", (chunk) => (out += chunk))
  child.on("exit", (code) =>
    resume(
      code === 0
        ? Effect.succeed(out.split("\n").filter((line) => line.startsWith("| ")))
        : Effect.fail(new Error(`the tuned run exited with ${code}`))
    ))
  return Effect.sync(() => child.kill("SIGKILL"))
})

const program = Effect.gen(function*() {
  const rows = [
    ...yield* runSetup(false, runs),
    ...yield* runSetup(true, runs),
    ...(yield* Effect.forEach(tunings, tunedRows)).flat()
  ]
  console.log(
    "| network transport (websocket rpc, 2 pods, cross-pod sends over loopback) | sends/s | sends per CPU-second | CPU µs per send, sending / owning pod | p50 ms | p99 ms |"
  )
  console.log("|---|---:|---:|---:|---:|---:|")
  for (const row of rows) console.log(row)
})

const main = process.argv[2] === "--owner"
  ? ownerChild(process.argv[3]!)
  : process.argv[2] === "--tuned"
  ? Effect.flatMap(
    runSetup(true, [[64, 200_000]], `, pods run with \`${process.argv[3]}\``),
    (rows) => Effect.sync(() => rows.forEach((row) => console.log(row)))
  )
  : program

Effect.runPromise(main.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
