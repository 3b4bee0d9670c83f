/**
 * The pod side of the network transport: the calls a pod answers (an `RpcGroup`), and the server that
 * answers them for this pod's `Sharding`. Envelopes cross as `SerializedEnvelope`s whose bodies were
 * encoded with the entity's message schema; replies come back as `MessageState`s of the encoded `Exit`.
 *
 * @since 0.1.0
 */
import type * as HttpServer from "@effect/platform/HttpServer"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as HashSet from "effect/HashSet"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as direct from "../internal/direct.js"
import * as sync from "../internal/exit.js"
import * as models from "../internal/models.js"
import * as MessageState from "../MessageState.js"
import type { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { PodAddress } from "../PodAddress.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import { ShardId } from "../ShardId.js"
import { Sharding } from "../Sharding.js"
import * as ShardingException from "../ShardingException.js"
import * as server from "./internal/server.js"
import { RequestRejected, TransportConfig } from "./Transport.js"

/**
 * Shards and the epochs they are granted (or revoked) at, as `[shard, epoch]` pairs.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ShardsPayload = {
  shards: Schema.Array(Schema.Int),
  epochs: Schema.Array(Schema.Tuple(Schema.Int, Schema.Int))
}

/**
 * The pod now owns `shards` (`Pods.assignShards`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const AssignShards = Rpc.make("AssignShards", { payload: ShardsPayload, error: RequestRejected })

/**
 * The pod must stop `shards`; it answers once their entities stopped (`Pods.unassignShards`). A pod that
 * refuses to confirm (a revocation below the epoch it holds) answers `PodUnavailableException`.
 *
 * @since 0.1.0
 * @category rpcs
 */
export const UnassignShards = Rpc.make("UnassignShards", {
  payload: ShardsPayload,
  error: Schema.Union(ShardingException.PodUnavailableException, RequestRejected)
})

/**
 * Whether the pod answers (`Pods.ping`).
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Ping = Rpc.make("Ping", { error: RequestRejected })

/**
 * An envelope on the wire: `[recipient type, entity id, message id, body, epoch]`. The body is the message
 * encoded with the entity type's schema (`Serialization`). Flat tuples of primitives, not the
 * `SerializedEnvelope` class: decoding a batch then builds no intermediate instances (the class cost about
 * a third of a send's CPU time).
 *
 * @since 0.1.0
 * @category schemas
 */
export const WireEnvelope = Schema.Tuple(Schema.String, Schema.String, Schema.String, Schema.String, Schema.Int)

/**
 * The outcome of one envelope on the wire: `[0]` acknowledged, `[1, exit]` processed (the `Exit` encoded
 * with the message's schemas), `[2, error]` the sharding error it got.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WireReply = Schema.Union(
  Schema.Tuple(Schema.Literal(0)),
  Schema.Tuple(Schema.Literal(1), Schema.String),
  Schema.Tuple(Schema.Literal(2), ShardingException.schema)
)

const isWireEnvelope = (u: unknown): u is typeof WireEnvelope.Type =>
  Array.isArray(u) && u.length === 5 && typeof u[0] === "string" && typeof u[1] === "string" &&
  typeof u[2] === "string" && typeof u[3] === "string" && Number.isSafeInteger(u[4])

/**
 * A batch of `WireEnvelope`s, checked in one loop of plain type tests: the same values `Schema.Array(WireEnvelope)`
 * accepts, without a parse tree per envelope (with `WireReplies`: the rpc schemas went from ~9% to ~3% of
 * bench/network.ts's CPU profile, ~+20% sends per CPU-second with both pods in one process).
 *
 * @since 0.1.0
 * @category schemas
 */
export const WireEnvelopes: Schema.Schema<ReadonlyArray<typeof WireEnvelope.Type>> = Schema.declare(
  (u): u is ReadonlyArray<typeof WireEnvelope.Type> => Array.isArray(u) && u.every(isWireEnvelope),
  { identifier: "WireEnvelopes", description: "an array of [recipient type, entity id, message id, body, epoch]" }
)

type EncodedReply = readonly [0] | readonly [1, string] | readonly [2, unknown]

const isEncodedReply = (u: unknown): u is EncodedReply =>
  Array.isArray(u) && (u.length === 1 ? u[0] === 0 : u.length === 2 && (u[0] === 2 || (u[0] === 1 && typeof u[1] === "string")))

/**
 * The replies of a batch (`WireReply`s), as one schema: acknowledged and processed replies are checked by
 * plain type tests and pass as they are; only an error reply goes through `ShardingException.schema`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WireReplies: Schema.Schema<ReadonlyArray<typeof WireReply.Type>, ReadonlyArray<EncodedReply>> = Schema.declare(
  [ShardingException.schema],
  {
    decode: (errorSchema) => {
      const decodeError = ParseResult.decodeUnknownEither(errorSchema)
      return (input, _options, ast) => {
        if (!Array.isArray(input) || !input.every(isEncodedReply)) return ParseResult.fail(new ParseResult.Type(ast, input))
        return mapErrors(input, (error) => decodeError(error))
      }
    },
    encode: (errorSchema) => {
      const encodeError = ParseResult.encodeEither(errorSchema)
      return (input, _options, ast) => {
        if (!Array.isArray(input)) return ParseResult.fail(new ParseResult.Type(ast, input))
        return mapErrors(input as ReadonlyArray<typeof WireReply.Type>, (error) => encodeError(error as ShardingException.ShardingException))
      }
    }
  },
  { identifier: "WireReplies" }
)

// The replies with each error reply's error converted by `f` (a batch without errors is returned as it is).
const mapErrors = <In extends EncodedReply, Out>(
  replies: ReadonlyArray<In>,
  f: (error: unknown) => Either.Either<unknown, ParseResult.ParseIssue>
): Either.Either<Out, ParseResult.ParseIssue> => {
  let out: Array<EncodedReply> | undefined
  for (let i = 0; i < replies.length; i++) {
    const reply = replies[i]!
    if (reply[0] !== 2) continue
    const converted = f(reply[1])
    if (Either.isLeft(converted)) return Either.left(new ParseResult.Pointer(i, replies, converted.left))
    out ??= replies.slice()
    out[i] = [2, converted.right]
  }
  return Either.right((out ?? replies) as Out)
}

/**
 * Delivers a batch of envelopes to the pod's entities (`Pods.sendAndGetState`); one reply per envelope,
 * in order. Envelopes of one batch go to their entities in the order given.
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Send = Rpc.make("Send", {
  payload: { envelopes: WireEnvelopes },
  success: WireReplies,
  error: RequestRejected
})

/**
 * An envelope as a `WireEnvelope`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toWireEnvelope = (envelope: SerializedEnvelope): typeof WireEnvelope.Type => [
  envelope.recipientAddress.recipientTypeName,
  envelope.recipientAddress.entityId,
  envelope.messageId,
  envelope.body.value,
  envelope.epoch
]

/**
 * A `WireEnvelope` as an envelope (its fields were checked by the schema: no second validation).
 *
 * @since 0.1.0
 * @category conversions
 */
export const fromWireEnvelope = (
  [recipientTypeName, entityId, messageId, body, epoch]: typeof WireEnvelope.Type
): SerializedEnvelope =>
  models.serializedEnvelope(
    models.recipientAddress(recipientTypeName, entityId),
    messageId,
    models.serializedMessage(body),
    epoch
  )

const acknowledgedReply = [0] as const

/**
 * A delivery's outcome as a `WireReply`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toWireReply = (
  exit: Exit.Exit<MessageState.MessageState<SerializedMessage>, ShardingException.ShardingException>,
  pod: PodAddress
): typeof WireReply.Type =>
  Exit.isSuccess(exit)
    ? (MessageState.isProcessed(exit.value) ? [1, exit.value.result.value] : acknowledgedReply)
    : [2, failureOf(exit.cause, pod)]

/**
 * A `WireReply` as the outcome `Pods.sendAndGetState` gives.
 *
 * @since 0.1.0
 * @category conversions
 */
export const fromWireReply = (
  reply: typeof WireReply.Type
): Exit.Exit<MessageState.MessageState<SerializedMessage>, ShardingException.ShardingException> =>
  reply[0] === 0
    ? Exit.succeed(MessageState.Acknowledged)
    : reply[0] === 1
    ? Exit.succeed(MessageState.Processed(models.serializedMessage(reply[1])))
    : Exit.fail(reply[1])

// A delivery that died or was interrupted (the server stopping) still gets a typed answer.
const failureOf = (
  cause: Cause.Cause<ShardingException.ShardingException>,
  pod: PodAddress
): ShardingException.ShardingException => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return failure.value
  return Cause.isInterruptedOnly(cause)
    ? new ShardingException.PodUnavailableException({ podAddress: pod })
    : new ShardingException.ExceptionWhileOfferingMessageException({ error: "the delivery died" })
}

/**
 * The calls a pod answers.
 *
 * @since 0.1.0
 * @category rpcs
 */
export class ShardingRpcs extends RpcGroup.make(AssignShards, UnassignShards, Ping, Send) {}

/**
 * The pairs of a shard-to-epoch map.
 *
 * @since 0.1.0
 * @category conversions
 */
export const epochsToPairs = (epochs: ReadonlyMap<number, number> | undefined): Array<readonly [number, number]> =>
  epochs === undefined ? [] : Array.from(epochs)

const shardSet = (shards: ReadonlyArray<number>) => HashSet.fromIterable(shards.map((value) => new ShardId({ value })))
const epochMap = (pairs: ReadonlyArray<readonly [number, number]>) => pairs.length === 0 ? undefined : new Map(pairs)

type Reply = typeof WireReply.Type

/**
 * The handlers of `ShardingRpcs` for a pod. Work a request starts (a delivery, a shard change) runs in a
 * fiber of the server's scope, not the request's: a caller that disconnects or times out abandons its
 * wait, never the handler, so a retried message finds the first attempt's reply instead of running again.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handlers = (
  sharding: Sharding
): Effect.Effect<RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof ShardingRpcs>>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runFork = yield* FiberSet.makeRuntime<never>()
    // Joining a fiber and being interrupted stops the wait only: the fiber runs on.
    const detached = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => Fiber.join(runFork(effect)))
    const receive = direct.receiverOf(sharding) ??
      ((envelope: SerializedEnvelope) => sharding.sendMessageToLocalEntityManagerWithoutRetries(envelope))
    // Envelopes are started in order, each in its own fiber only when it does not answer at once (most
    // handlers answer synchronously: no fiber for those; a fiber per envelope cost ~60-100 us each).
    const deliverAll = (envelopes: ReadonlyArray<typeof WireEnvelope.Type>): Effect.Effect<Array<Reply>> =>
      Effect.suspend(() => {
        const replies: Array<Reply> = new Array(envelopes.length)
        const running: Array<readonly [number, Fiber.RuntimeFiber<MessageState.MessageState<SerializedMessage>, ShardingException.ShardingException>]> = []
        for (let i = 0; i < envelopes.length; i++) {
          const started = receive(fromWireEnvelope(envelopes[i]!))
          const completed = sync.completed(started)
          if (completed !== undefined) replies[i] = toWireReply(completed, sharding.podAddress)
          else running.push([i, runFork(started)])
        }
        if (running.length === 0) return Exit.succeed(replies)
        // Awaiting a fiber and being interrupted stops the wait only.
        return Effect.as(
          Effect.forEach(running, ([i, fiber]) => Effect.map(Fiber.await(fiber), (exit) => void (replies[i] = toWireReply(exit, sharding.podAddress))), {
            discard: true
          }),
          replies
        )
      })
    return ShardingRpcs.of({
      AssignShards: ({ epochs, shards }) => detached(sharding.assign(shardSet(shards), epochMap(epochs))),
      UnassignShards: ({ epochs, shards }) => detached(sharding.unassign(shardSet(shards), epochMap(epochs))),
      Ping: () => Effect.void,
      Send: ({ envelopes }) => deliverAll(envelopes)
    })
  })

/**
 * Serves this pod's `Sharding` on the HTTP server in context (websocket rpc at `/rpc`, `/health`) until
 * the scope closes.
 *
 * @since 0.1.0
 * @category servers
 */
export const serve: Effect.Effect<void, never, Sharding | TransportConfig | HttpServer.HttpServer | Scope.Scope> =
  Effect.gen(function*() {
    const sharding = yield* Sharding
    const config = yield* TransportConfig
    const built = yield* ShardingRpcs.toHandlersContext(handlers(sharding))
    yield* server.serve({
      name: `pod ${sharding.podAddress.host}:${sharding.podAddress.port}`,
      group: ShardingRpcs,
      handlers: built,
      config,
      health: Effect.map(sharding.isShuttingDown, (stopping) => !stopping)
    })
  })
