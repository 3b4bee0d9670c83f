import { type ManagerConfig, RecipientAddress, Sharding, type ShardingConfig, ShardManager, Storage } from "@effect-cluster/cluster"
import { NodeCluster, type Transport } from "@effect-cluster/cluster/node"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Socket from "@effect/platform/Socket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { Clock, Context, Effect, ExecutionStrategy, Exit, Layer, Logger, Queue, Scope } from "effect"
import type * as Https from "node:https"
import * as Net from "node:net"

/** Pods and a manager in this process, talking over real loopback sockets through the network layers. */

const liveClock = Clock.make()

/** Polls `condition` on the live clock (also under TestClock) until it holds, failing after `timeoutMillis`. */
export const eventuallyLive = (condition: Effect.Effect<boolean>, timeoutMillis = 10_000): Effect.Effect<void> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    while (!(yield* condition)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage("condition not reached in time")
      yield* Effect.withClock(Effect.sleep("10 millis"), liveClock)
    }
  })

export const portOf = (context: Context.Context<HttpServer.HttpServer>): number => {
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "TcpAddress" ? address.port : 0
}

export interface NetworkManager {
  readonly manager: ShardManager.ShardManager
  readonly port: number
  readonly uri: string
}

export const startManager = (options: {
  readonly manager?: Partial<ManagerConfig.ManagerConfig>
  readonly transport?: Partial<Transport.TransportConfig>
  readonly https?: Https.ServerOptions
}): Effect.Effect<NetworkManager, Storage.StorageException, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      NodeCluster.layerManager({
        manager: { apiPort: 0, ...options.manager },
        transport: options.transport,
        https: options.https
      }).pipe(Layer.provide(Storage.memory))
    ).pipe(Effect.orDie)
    const port = portOf(context)
    const scheme = options.https === undefined ? "http" : "https"
    return { manager: Context.get(context, ShardManager.ShardManager), port, uri: `${scheme}://127.0.0.1:${port}` }
  })

export interface NetworkPod {
  readonly sharding: Sharding.Sharding
  readonly port: number
  readonly close: Effect.Effect<void>
}

/** A pod, registered, with `setup` run first (entity registrations). */
export const startPod = (options: {
  readonly managerUri: string
  readonly sharding?: Partial<ShardingConfig.ShardingConfig>
  readonly transport?: Partial<Transport.TransportConfig>
  readonly https?: Https.ServerOptions
  readonly setup?: Effect.Effect<void, never, Sharding.Sharding>
}): Effect.Effect<NetworkPod, never, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
    const context = yield* Layer.buildWithScope(
      NodeCluster.layerPod({
        sharding: { shardingPort: 0, shardManagerUri: options.managerUri, ...options.sharding },
        transport: options.transport,
        https: options.https
      }),
      scope
    )
    const sharding = Context.get(context, Sharding.Sharding)
    if (options.setup) yield* Effect.provideService(options.setup, Sharding.Sharding, sharding)
    yield* Scope.extend(sharding.registerScoped, scope)
    return { sharding, port: portOf(context), close: Scope.close(scope, Exit.void) }
  })

/** A logger keeping every line (message and annotations) as text. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const parts = Array.isArray(message) ? message : [message]
    const annotated: Record<string, unknown> = {}
    for (const [key, value] of annotations) annotated[key] = value
    lines.push(`${logLevel.label} ${parts.map(String).join(" ")} ${JSON.stringify(annotated)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}


/** A TCP server that accepts connections and never answers (a black-holed peer). */
export const blackHole: Effect.Effect<
  { readonly port: number; readonly connections: () => number; readonly open: () => number },
  never,
  Scope.Scope
> = Effect.map(
    Effect.acquireRelease(
      Effect.async<{ server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
        const sockets = new Set<Net.Socket>()
        const server = Net.createServer((socket) => {
          sockets.add(socket)
          socket.on("error", () => {})
          // Reads and drops what the peer sends; a peer that closes its side gets it closed here too.
          socket.resume()
          socket.on("end", () => socket.end())
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
      }),
      ({ server, sockets }) =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    ),
    ({ server, sockets }) => ({
      port: (server.address() as Net.AddressInfo).port,
      connections: () => sockets.size,
      open: () => Array.from(sockets).filter((socket) => !socket.destroyed && !socket.readableEnded).length
    })
  )

/** A port nothing listens on (bound, then released). */
export const closedPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A raw websocket to a server's rpc endpoint: frames go out as given, replies come back as text. */
export const rawWebSocket = (port: number): Effect.Effect<{
  readonly send: (frame: string) => Effect.Effect<void>
  readonly next: Effect.Effect<string>
}, never, Scope.Scope> =>
  Effect.gen(function*() {
    const socket = yield* Socket.makeWebSocket(`ws://127.0.0.1:${port}/rpc`).pipe(
      Effect.provide(NodeSocket.layerWebSocketConstructor)
    )
    const replies = yield* Queue.unbounded<string>()
    const decoder = new TextDecoder()
    yield* Effect.forkScoped(
      socket.runRaw((data) => Queue.offer(replies, typeof data === "string" ? data : decoder.decode(data))).pipe(
        Effect.ignore
      )
    )
    const write = yield* socket.writer
    return {
      send: (frame) => Effect.orDie(write(frame)),
      next: Effect.orDie(Effect.timeoutFail(Queue.take(replies), {
        duration: "10 seconds",
        onTimeout: () => new Error("no reply")
      }))
    }
  })

/** Writes raw bytes on a TCP connection and waits for the server to answer or close it. */
export const rawTcp = (port: number, bytes: Uint8Array): Effect.Effect<string> =>
  Effect.async<string>((resume) => {
    const chunks: Array<Buffer> = []
    const socket = Net.createConnection({ host: "127.0.0.1", port }, () => socket.end(bytes))
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("error", () => {})
    socket.on("close", () => resume(Effect.succeed(Buffer.concat(chunks).toString("latin1"))))
    return Effect.sync(() => socket.destroy())
  })

/** Waits until the pods hold `numberOfShards` between them, evenly (the manager's follow-up rounds are over). */
export const balanced = (pods: ReadonlyArray<NetworkPod>, numberOfShards: number): Effect.Effect<void> =>
  eventuallyLive(
    Effect.map(
      Effect.forEach(pods, (pod) => Effect.map(pod.sharding.getAssignedShardIds, (shards) => Array.from(shards).length)),
      (counts) => counts.reduce((a, b) => a + b, 0) === numberOfShards && Math.max(...counts) - Math.min(...counts) <= 1
    )
  )

/** An entity id whose shard `pod` holds. */
export const entityOn = (pod: NetworkPod, typeName: string, prefix: string): Effect.Effect<string> =>
  Effect.gen(function*() {
    for (let i = 0;; i++) {
      const id = `${prefix}-${i}`
      if (yield* pod.sharding.isEntityOnLocalShards(RecipientAddress.makeRecipientAddress(typeName, id))) return id
    }
  })
