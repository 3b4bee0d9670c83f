import { PodAddress, Sharding, ShardingConfig } from "@effect-cluster/cluster"
import { PodsRpc, ShardingProtocol, ShardManagerClientRpc, ShardManagerProtocol, Transport } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, FastCheck as fc, Option, Redacted, Schema } from "effect"
import { Counter, counterBehaviour, freshId, GetCount, Increment } from "./utils/counter.js"
import { balanced, captureLogs, entityOn, eventuallyLive, rawTcp, rawWebSocket, startManager, startPod } from "./utils/network.js"

const numberOfShards = 12
const SECRET = "correct-horse-battery-staple-7f3a"
const WRONG = "wrong-secret-for-this-cluster-91bd"
const secured = { secret: Option.some(Redacted.make(SECRET)) }

const holdsAll = (sharding: Sharding.Sharding) =>
  Effect.map(sharding.getAssignedShardIds, (shards) => Array.from(shards).length === numberOfShards)

// A secured cluster: the owner holds every shard, the sender none; returns both and the manager.
const securedCluster = (transport: Partial<Transport.TransportConfig>) =>
  Effect.gen(function*() {
    const manager = yield* startManager({ manager: { numberOfShards }, transport })
    const owner = yield* startPod({
      managerUri: manager.uri,
      sharding: { numberOfShards },
      transport,
      setup: Sharding.registerEntity(Counter)(counterBehaviour())
    })
    yield* eventuallyLive(holdsAll(owner.sharding))
    const sender = yield* startPod({ managerUri: manager.uri, sharding: { numberOfShards }, transport })
    yield* balanced([owner, sender], numberOfShards)
    return { manager, owner, sender }
  })

const routesCorrectly = (cluster: Effect.Effect.Success<ReturnType<typeof securedCluster>>) =>
  Effect.gen(function*() {
    const entity = yield* entityOn(cluster.owner, Counter.name, freshId("entity"))
    const messenger = cluster.sender.sharding.messenger(Counter)
    expect(yield* messenger.send(entity)(new Increment({ messageId: freshId(), by: 4 }))).toBe(4)
    expect(yield* messenger.send(entity)(new GetCount({ messageId: freshId() }))).toBe(4)
    expect(yield* cluster.sender.sharding.localEntityCount).toBe(0)
  })

describe("Network transport: authentication", () => {
  it.scopedLive("with a secret, calls with the right token are served and others rejected, logged without the secret", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const cluster = yield* securedCluster(secured)
      yield* routesCorrectly(cluster)

      const owner = cluster.owner.sharding.podAddress
      for (const transport of [{ secret: Option.some(Redacted.make(WRONG)) }, {}]) {
        const pods = yield* PodsRpc.make().pipe(Effect.provide(Transport.withDefaults(transport)))
        const error = yield* Effect.flip(pods.ping(owner))
        expect(error._tag).toBe("PodUnavailableException")
        expect(error.notDelivered).toBe(true)
        const client = yield* ShardManagerClientRpc.make.pipe(
          Effect.provide(Transport.withDefaults(transport)),
          Effect.provide(ShardingConfig.withDefaults({ shardManagerUri: cluster.manager.uri }))
        )
        const managerError = yield* Effect.flip(client.register(PodAddress.make("127.0.0.1", 1)))
        expect(managerError._tag).toBe("ShardManagerUnavailableException")
      }
      const rejections = logs.lines.filter((line) => line.includes("Unauthenticated"))
      // Two pods' and the manager's rejections: wrong token and no token, each side.
      expect(rejections.length).toBeGreaterThanOrEqual(4)
      expect(rejections.some((line) => line.includes("wrong token"))).toBe(true)
      expect(rejections.some((line) => line.includes("no token"))).toBe(true)
      for (const line of logs.lines) {
        expect(line).not.toContain(SECRET)
        expect(line).not.toContain(WRONG)
        expect(line).not.toContain(Transport.tokenOf(Redacted.make(SECRET)))
        expect(line).not.toContain(Transport.tokenOf(Redacted.make(WRONG)))
      }
      // Still serving.
      yield* routesCorrectly(cluster)
    }).pipe(Effect.provide(logs.layer))
  })
})

// --- Bad requests, generated.

const REJECTED = "@effect-cluster/cluster/node/RequestRejected"
const token = Transport.tokenOf(Redacted.make(SECRET))
const authed: Array<[string, string]> = [[Transport.authHeader, token]]

const isJson = (text: string) => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

const protocolTags = new Set(["Request", "Ack", "Interrupt", "Ping", "Eof"])
const requestId = fc.bigInt({ min: 0n, max: 2n ** 53n }).map(String)

/** Frames no server may run, each one line of ndjson (so each gets its own answer). */
const badFrames = (group: { readonly requests: ReadonlyMap<string, any> }, maxMessageBytes: number) => {
  const withPayload = Array.from(group.requests.values()).filter((rpc) => rpc.payloadSchema !== Schema.Void)
  const acceptsPayload = new Map(
    withPayload.map((rpc) => [rpc._tag as string, Schema.is(Schema.encodedBoundSchema(rpc.payloadSchema))])
  )
  const tags = withPayload.map((rpc) => rpc._tag as string)
  const validRequest = JSON.stringify({
    _tag: "Request",
    id: "1",
    tag: tags[0],
    payload: { shards: [1], epochs: [[1, 1]], podAddress: { host: "h", port: 1 } },
    headers: authed
  })
  return fc.oneof(
    // Not JSON at all.
    fc.string({ minLength: 1, maxLength: 200 }).map((text) => text.replace(/[\r\n]/g, " ")).filter((text) =>
      !isJson(text)
    ),
    // JSON, but not a message of the protocol.
    fc.jsonValue({ maxDepth: 3 }).filter((value) =>
      !(typeof value === "object" && value !== null && !Array.isArray(value) &&
        protocolTags.has((value as Record<string, unknown>)._tag as string))
    ).map((value) => JSON.stringify(value)),
    // Acks and interrupts naming no valid request id.
    fc.record({
      _tag: fc.constantFrom("Ack", "Interrupt"),
      requestId: fc.oneof(fc.string({ maxLength: 30 }), fc.integer(), fc.constant(null))
    }).filter((message) => !(typeof message.requestId === "string" && /^[0-9]{1,20}$/.test(message.requestId)))
      .map((message) => JSON.stringify(message)),
    // Requests of the protocol whose payload its schema rejects.
    fc.record({ tag: fc.constantFrom(...tags), payload: fc.jsonValue({ maxDepth: 4 }), id: requestId }).filter((r) =>
      !acceptsPayload.get(r.tag)!(r.payload)
    ).map((r) => JSON.stringify({ _tag: "Request", id: r.id, tag: r.tag, payload: r.payload, headers: authed })),
    // Requests with an invalid id, unknown tag or malformed headers.
    fc.record({
      id: fc.oneof(fc.string({ maxLength: 25 }), fc.integer(), fc.constant(null)),
      tag: fc.string({ maxLength: 20 })
    }).filter((r) => !(typeof r.id === "string" && /^[0-9]{1,20}$/.test(r.id)))
      .map((r) => JSON.stringify({ _tag: "Request", id: r.id, tag: r.tag, payload: {}, headers: authed })),
    fc.record({ id: requestId, tag: fc.string({ maxLength: 20 }).filter((tag) => !group.requests.has(tag)) })
      .map((r) => JSON.stringify({ _tag: "Request", id: r.id, tag: r.tag, payload: {}, headers: authed })),
    fc.record({ id: requestId, headers: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant([["x", 1]])) })
      .filter((r) => !Array.isArray(r.headers) || r.headers.length > 0)
      .map((r) => JSON.stringify({ _tag: "Request", id: r.id, tag: tags[0], payload: {}, headers: r.headers })),
    // Valid-looking requests without the token, or with a wrong one.
    fc.record({ id: requestId, wrong: fc.option(fc.string({ maxLength: 60 }), { nil: undefined }) }).map((r) =>
      JSON.stringify({
        _tag: "Request",
        id: r.id,
        tag: tags[0],
        payload: {},
        headers: r.wrong === undefined ? [] : [[Transport.authHeader, r.wrong]]
      })
    ),
    // A valid request cut short.
    fc.integer({ min: 1, max: validRequest.length - 1 }).map((at) => validRequest.slice(0, at)),
    // Larger than the server reads.
    fc.integer({ min: 1, max: 4096 }).map((extra) => "x".repeat(maxMessageBytes + extra))
  ).map((frame) => frame + "\n")
}

const isRejection = (line: string): boolean => {
  const reply = JSON.parse(line)
  if (reply._tag === "Defect") return reply.defect?._tag === REJECTED
  return reply._tag === "Exit" && reply.exit?._tag === "Failure" && reply.exit.cause?._tag === "Fail" &&
    reply.exit.cause.error?._tag === REJECTED
}

describe("Network transport: malformed, truncated, oversized and unauthenticated requests", () => {
  it.scopedLive("a pod and the manager answer each of a few hundred bad requests with a typed rejection and keep routing", () => {
    const logs = captureLogs()
    const maxMessageBytes = 16 * 1024
    return Effect.gen(function*() {
      const cluster = yield* securedCluster({ ...secured, maxMessageBytes })
      yield* routesCorrectly(cluster)
      const targets = [
        { name: "pod", port: cluster.owner.sharding.podAddress.port, group: ShardingProtocol.ShardingRpcs },
        { name: "manager", port: cluster.manager.port, group: ShardManagerProtocol.ShardManagerRpcs }
      ]
      let rejected = 0
      for (const [index, target] of targets.entries()) {
        const frames = fc.sample(badFrames(target.group, maxMessageBytes), { numRuns: 300, seed: 20261206 + index })
        const connection = yield* rawWebSocket(target.port)
        for (const frame of frames) {
          yield* connection.send(frame)
          const reply = yield* connection.next
          const lines = reply.split("\n").filter((line) => line.length > 0)
          expect(lines.length, `${target.name}: ${frame.slice(0, 120)}`).toBe(1)
          expect(isRejection(lines[0]!), `${target.name}: ${frame.slice(0, 120)} -> ${lines[0]}`).toBe(true)
          rejected++
        }
        // Bytes that are not HTTP at all, on the same port.
        for (const bytes of fc.sample(fc.uint8Array({ minLength: 1, maxLength: 512 }), { numRuns: 20, seed: 7 + index })) {
          const answer = yield* Effect.timeoutFail(rawTcp(target.port, bytes), {
            duration: Duration.seconds(10),
            onTimeout: () => new Error("the server neither answered nor closed")
          }).pipe(Effect.orDie)
          expect(answer === "" || answer.startsWith("HTTP/1.1 4")).toBe(true)
        }
      }
      expect(rejected).toBe(600)
      // One log line per rejection, none with the secret or the token.
      expect(logs.lines.filter((line) => line.includes("rejected a request")).length).toBeGreaterThanOrEqual(600)
      for (const line of logs.lines) {
        expect(line).not.toContain(SECRET)
        expect(line).not.toContain(token)
      }
      // Both still route: the sender reaches the owner, and pods still renew with the manager.
      yield* routesCorrectly(cluster)
      yield* cluster.sender.sharding.heartbeat
      yield* cluster.owner.sharding.heartbeat
      yield* routesCorrectly(cluster)
    }).pipe(Effect.provide(logs.layer))
  })
})
