/// <reference types="node" />
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as RpcServer from "@effect/rpc/RpcServer"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as Https from "node:https"
import { RequestRejected, type TransportConfig } from "../Transport.js"
import { AUTH_HEADER, tokenMatches, tokenOf } from "./auth.js"

/**
 * The server side of the transport: an HTTP server with the rpc websocket endpoint at `/rpc` and a
 * `/health` probe. Everything a peer sends passes through a guard before `RpcServer` sees it: frames that
 * are not messages of the protocol, payloads their schema rejects, oversized frames and calls without the
 * right token get a `RequestRejected` reply and one log line (never the frame's content, so never a
 * token), and the connection keeps serving.
 */

/** The path of the rpc websocket endpoint. */
export const RPC_PATH = "/rpc"

// What the guarded parser hands on in place of a frame it could not read.
interface UnreadableFrame {
  readonly _tag: "UnreadableFrame"
  readonly reason: "Malformed" | "TooLarge"
  readonly detail: string
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const byteLength = (data: Uint8Array | string): number =>
  typeof data === "string" ? Buffer.byteLength(data) : data.byteLength

/**
 * Newline-delimited JSON (`RpcSerialization.ndjson`) with a size limit and recovery: a frame over the
 * limit or not JSON is replaced by an `UnreadableFrame` item and the parser's buffer is dropped, so the
 * next frame on the connection is read afresh (the library's parser would keep the bad bytes and fail
 * every later frame).
 */
export const guardedSerialization = (maxMessageBytes: number): RpcSerialization.RpcSerialization["Type"] => {
  const base = RpcSerialization.makeNdjson({ maxBufferSize: maxMessageBytes })
  return RpcSerialization.RpcSerialization.of({
    contentType: base.contentType,
    includesFraming: base.includesFraming,
    unsafeMake: () => {
      let parser = base.unsafeMake()
      const unreadable = (reason: UnreadableFrame["reason"], detail: string): Array<unknown> => {
        parser = base.unsafeMake()
        return [{ _tag: "UnreadableFrame", reason, detail } satisfies UnreadableFrame]
      }
      return {
        decode: (data) => {
          const size = byteLength(data)
          if (size > maxMessageBytes) return unreadable("TooLarge", `frame of ${size} bytes (limit ${maxMessageBytes})`)
          try {
            // The socket protocol reads `_tag` of every item before the guard sees it: a JSON value that is
            // not an object (`null`, a number) would kill the connection's reader.
            return parser.decode(data).map((item) =>
              isRecord(item) ? item : { _tag: "UnreadableFrame", reason: "Malformed", detail: "not a protocol message" }
            )
          } catch (error) {
            // The error's message may quote the frame: only its kind is kept.
            const tooLarge = typeof error === "object" && error !== null && "reason" in error &&
              error.reason === "BufferSizeExceeded"
            return tooLarge
              ? unreadable("TooLarge", `frames over ${maxMessageBytes} bytes`)
              : unreadable("Malformed", `a frame of ${size} bytes is not JSON`)
          }
        },
        encode: (response) => parser.encode(response)
      }
    }
  })
}

const encodeRejected = Schema.encodeSync(RequestRejected)

const rejectedExit = (requestId: string, rejected: RequestRejected): FromServerEncoded => ({
  _tag: "Exit",
  requestId,
  exit: { _tag: "Failure", cause: { _tag: "Fail", error: encodeRejected(rejected) } }
})

const rejectedDefect = (rejected: RequestRejected): FromServerEncoded => ({
  _tag: "Defect",
  defect: encodeRejected(rejected)
})

const passThrough = new Set(["Ack", "Interrupt", "Ping", "Eof"])

const isRequestId = (u: unknown): u is string => typeof u === "string" && /^[0-9]{1,20}$/.test(u)

const isHeaders = (u: unknown): u is ReadonlyArray<readonly [string, string]> =>
  Array.isArray(u) &&
  u.every((h) => Array.isArray(h) && h.length === 2 && typeof h[0] === "string" && typeof h[1] === "string")

/**
 * Wraps a server protocol: every message reaches the rpc server only if it is a request of `group` with a
 * payload its schema accepts (checked on the encoded side, before decoding) and, with a secret, the right
 * token. Anything else is answered with `RequestRejected` (as the request's typed failure when it has an
 * id, else as a connection-level defect) and logged.
 */
export const guardProtocol = <Rpcs extends Rpc.Any>(
  protocol: RpcServer.Protocol["Type"],
  group: RpcGroup.RpcGroup<Rpcs>,
  options: { readonly name: string; readonly token: Option.Option<string> }
): RpcServer.Protocol["Type"] => {
  const payloadChecks = new Map<string, (u: unknown) => boolean>()
  for (const [tag, rpc] of group.requests) {
    payloadChecks.set(tag, Schema.is(Schema.encodedBoundSchema((rpc as unknown as Rpc.AnyWithProps).payloadSchema)))
  }
  const expected = Option.getOrUndefined(options.token)

  const reject = (
    clientId: number,
    requestId: string | undefined,
    rejected: RequestRejected
  ): Effect.Effect<void> =>
    Effect.zipRight(
      Effect.logWarning(`${options.name}: rejected a request`).pipe(
        Effect.annotateLogs({ reason: rejected.reason, detail: rejected.detail, client: clientId })
      ),
      protocol.send(clientId, requestId === undefined ? rejectedDefect(rejected) : rejectedExit(requestId, rejected))
    )

  const check = (clientId: number, message: unknown): Effect.Effect<void> | undefined => {
    if (!isRecord(message)) {
      return reject(clientId, undefined, new RequestRejected({ reason: "Malformed", detail: "not a protocol message" }))
    }
    if (message._tag === "UnreadableFrame") {
      const frame = message as unknown as UnreadableFrame
      return reject(clientId, undefined, new RequestRejected({ reason: frame.reason, detail: frame.detail }))
    }
    if (message._tag !== "Request") {
      if (typeof message._tag !== "string" || !passThrough.has(message._tag)) {
        return reject(clientId, undefined, new RequestRejected({ reason: "Malformed", detail: "unknown message kind" }))
      }
      // Acks and interrupts name a request: the library parses the id as a bigint and throws on others.
      if ((message._tag === "Ack" || message._tag === "Interrupt") && !isRequestId(message.requestId)) {
        return reject(clientId, undefined, new RequestRejected({ reason: "Malformed", detail: "invalid request id" }))
      }
      return undefined
    }
    const requestId = isRequestId(message.id) ? message.id : undefined
    if (requestId === undefined) {
      return reject(clientId, undefined, new RequestRejected({ reason: "Malformed", detail: "request without a valid id" }))
    }
    // Headers: those of the websocket upgrade followed by the request's own (the library concatenates them).
    const headers = message.headers
    if (!isHeaders(headers)) {
      return reject(clientId, requestId, new RequestRejected({ reason: "Malformed", detail: "invalid headers" }))
    }
    if (expected !== undefined) {
      let token: string | undefined
      for (const [name, value] of headers) if (name.toLowerCase() === AUTH_HEADER) token = value
      if (token === undefined || !tokenMatches(token, expected)) {
        return reject(
          clientId,
          requestId,
          new RequestRejected({ reason: "Unauthenticated", detail: token === undefined ? "no token" : "wrong token" })
        )
      }
    }
    const tag = message.tag
    const payloadCheck = typeof tag === "string" ? payloadChecks.get(tag) : undefined
    if (payloadCheck === undefined) {
      return reject(clientId, requestId, new RequestRejected({ reason: "Malformed", detail: "unknown request" }))
    }
    if (!payloadCheck(message.payload)) {
      return reject(clientId, requestId, new RequestRejected({ reason: "Malformed", detail: `invalid ${tag} payload` }))
    }
    return undefined
  }

  return {
    ...protocol,
    run: (f) =>
      protocol.run((clientId, message) => check(clientId, message) ?? f(clientId, message as FromClientEncoded))
  }
}

/**
 * Where and how a server listens. `https` (key, cert, ...) makes it a TLS server; clients then need
 * `tls: true`.
 */
export interface ServerOptions {
  readonly host: string
  readonly port: number
  readonly https?: Https.ServerOptions | undefined
}

const createServer = (options: ServerOptions) => (): Http.Server =>
  options.https !== undefined
    ? Https.createServer(options.https)
    : Http.createServer()

/** The HTTP server, listening. */
export const layerHttpServer = (options: ServerOptions): Layer.Layer<HttpServer.HttpServer, never> =>
  NodeHttpServer.layerServer(createServer(options), { host: options.host, port: options.port }).pipe(
    Layer.orDie
  )

/**
 * Serves `group` with `handlers` on the HTTP server in context, guarded, with `/health` answering
 * `health` (200 when it succeeds with true, 503 otherwise). Runs until the scope closes.
 */
export const serve = <Rpcs extends Rpc.Any>(options: {
  readonly name: string
  readonly group: RpcGroup.RpcGroup<Rpcs>
  readonly handlers: Context.Context<Rpc.ToHandler<Rpcs>>
  readonly config: TransportConfig
  readonly health: Effect.Effect<boolean>
}): Effect.Effect<void, never, HttpServer.HttpServer | Scope.Scope> =>
  Effect.gen(function*() {
    const { httpApp, protocol } = yield* RpcServer.makeProtocolWithHttpAppWebsocket.pipe(
      Effect.provideService(RpcSerialization.RpcSerialization, guardedSerialization(options.config.maxMessageBytes))
    )
    const guarded = guardProtocol(protocol, options.group, {
      name: options.name,
      token: Option.map(options.config.secret, tokenOf)
    })
    yield* RpcServer.make(options.group, { disableTracing: true, concurrency: "unbounded" }).pipe(
      Effect.provideService(RpcServer.Protocol, guarded),
      Effect.provide(options.handlers),
      Effect.interruptible,
      Effect.forkScoped
    )
    const health = Effect.map(options.health, (ok) =>
      ok ? HttpServerResponse.text("ok") : HttpServerResponse.text("unavailable", { status: 503 }))
    const router = HttpRouter.empty.pipe(
      HttpRouter.get(RPC_PATH, httpApp),
      HttpRouter.get("/health", health)
    )
    yield* HttpServer.serveEffect(router)
  })

/** The port the HTTP server in context listens on. */
export const boundPort: Effect.Effect<number, never, HttpServer.HttpServer> = Effect.map(
  HttpServer.HttpServer,
  (server) => server.address._tag === "TcpAddress" ? server.address.port : 0
)
