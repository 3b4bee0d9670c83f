/**
 * `Pods` over the network: calls to other pods through `ShardingProtocol`, one pooled connection per pod.
 * Concurrent sends to one pod are batched into `Send` requests (at most `maxBatchesInFlight` per pod
 * at a time; an idle pod gets each send at once). What is queued is split over the free request slots, so
 * that the pod works on one batch while this process handles the reply to another: 64 senders and 2
 * slots make two requests of 32, not one of 64 that both sides would take turns on. Every call is bounded
 * by the transport's timeouts.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import type * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as RuntimeFlags from "effect/RuntimeFlags"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import type * as Scope from "effect/Scope"
import type { PodAddress } from "../PodAddress.js"
import { Pods } from "../Pods.js"
import * as direct from "../internal/direct.js"
import * as models from "../internal/models.js"
import * as MessageState from "../MessageState.js"
import type { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import type { ShardId } from "../ShardId.js"
import type { ShardingException } from "../ShardingException.js"
import { PodUnavailableException, SerializationException } from "../ShardingException.js"
import type { PeerPool } from "./internal/client.js"
import { makePeerPool, PeerFailure } from "./internal/client.js"
import type { Outbox } from "./internal/outboxes.js"
import { makeOutboxes, Pending } from "./internal/outboxes.js"
import type { WireEnvelope } from "./ShardingProtocol.js"
import { epochsToPairs, ShardingRpcs, toWireEnvelope } from "./ShardingProtocol.js"
import type { RequestRejected } from "./Transport.js"
import { TransportConfig } from "./Transport.js"

/**
 * Batching limits: at most `maxBatchSize` envelopes per `Send` request and `maxBatchesInFlight` requests
 * awaiting their answer per pod. A limit below 1 counts as 1, Infinity as no limit, NaN as its default.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchOptions {
  readonly maxBatchSize: number
  readonly maxBatchesInFlight: number
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const defaultBatchOptions: BatchOptions = { maxBatchSize: 256, maxBatchesInFlight: 2 }

// The options with the defaults, each at least 1 (0 slots would never send); one that is not a number
// (NaN) is its default. Infinity means no limit.
const batchOptions = (options: Partial<BatchOptions> | undefined): BatchOptions => {
  const { maxBatchesInFlight, maxBatchSize } = { ...defaultBatchOptions, ...options }
  const atLeastOne = (n: number, orElse: number) => Number.isNaN(n) ? orElse : Math.max(1, Math.floor(n))
  return {
    maxBatchSize: atLeastOne(maxBatchSize, defaultBatchOptions.maxBatchSize),
    maxBatchesInFlight: atLeastOne(maxBatchesInFlight, defaultBatchOptions.maxBatchesInFlight)
  }
}

const unavailable = (pod: PodAddress, notDelivered: boolean) => new PodUnavailableException({ podAddress: pod, notDelivered })

// A rejected request was not run: not delivered. Rejections mean misconfiguration (secret, limits).
const fromCallError = (pod: PodAddress) => (error: PeerFailure | RequestRejected) =>
  error instanceof PeerFailure
    ? Effect.fail(unavailable(pod, error.notDelivered))
    : Effect.zipRight(
      Effect.logWarning(`pod ${pod.host}:${pod.port} rejected a request`).pipe(
        Effect.annotateLogs({ reason: error.reason, detail: error.detail })
      ),
      Effect.fail(unavailable(pod, true))
    )

type Pool = PeerPool<RpcGroup.Rpcs<typeof ShardingRpcs>>

interface BatchLimits extends BatchOptions {
  readonly maxBatchBytes: number
  readonly sendTimeoutMillis: number
}

/**
 * Takes the next batch off an outbox: envelopes queued for longer than `sendTimeout` were never sent and
 * fail as not delivered; the batch stops at its share of the queue (split evenly over the free request
 * slots), `maxBatchSize` envelopes or `maxBatchBytes`.
 */
const takeBatch = (outbox: Outbox, now: number, limits: BatchLimits): Array<Pending> => {
  const batch: Array<Pending> = []
  // (at least 1: with no limit on the slots, Infinity free, each envelope has a request of its own)
  const share = Math.max(1, Math.ceil(outbox.queue.length / (limits.maxBatchesInFlight - outbox.inFlight)))
  const limit = Math.min(limits.maxBatchSize, share)
  let bytes = 0
  let taken = 0
  for (; taken < outbox.queue.length && batch.length < limit; taken++) {
    const pending = outbox.queue[taken]!
    // (an interrupted sender no longer waits: its envelope stays here)
    if (pending.abandoned) continue
    if (now - pending.queuedAt >= limits.sendTimeoutMillis) {
      pending.fail(unavailable(outbox.pod, true))
      continue
    }
    if (batch.length > 0 && bytes + pending.size > limits.maxBatchBytes) break
    bytes += pending.size
    pending.sent = true
    batch.push(pending)
  }
  outbox.queue.splice(0, taken)
  return batch
}

/**
 * `Pods.sendAndGetState` through per-pod outboxes, continued by its caller as the reply arrives (see
 * `direct.SendThen`): concurrent sends to one pod share a `Send` request.
 */
const makeBatchedSend = (
  pool: Pool,
  config: TransportConfig,
  { maxBatchesInFlight, maxBatchSize }: BatchOptions
): Effect.Effect<direct.SendThen, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runFork = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    const sendTimeoutMillis = Duration.toMillis(config.sendTimeout)
    // A batch stays under half the server's frame limit (the rest is headers and framing).
    const maxBatchBytes = Math.floor(config.maxMessageBytes / 2)
    const limits: BatchLimits = { maxBatchesInFlight, maxBatchSize, maxBatchBytes, sendTimeoutMillis }
    const outboxOf = makeOutboxes()
    // Once the Pods' scope closes, no batch goes: a sender waiting in an outbox, or for a request in flight,
    // would wait for ever (the batch fibers are interrupted). Each is answered as unavailable instead (queued:
    // not delivered; in flight: outcome unknown), and a send made after the close fails at once. (Added after
    // the batch fibers' set: runs before it interrupts them.)
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        for (const outbox of outboxOf.all()) {
          const queued = outbox.queue.splice(0, outbox.queue.length)
          for (const pending of queued) if (!pending.abandoned) pending.fail(unavailable(outbox.pod, true))
          // (taken, their request perhaps not started: the flush fiber may be interrupted before its own
          // handler is in place; a pending is answered once)
          for (const batch of outbox.batches) for (const pending of batch) pending.fail(unavailable(outbox.pod, false))
        }
      })
    )

    const sendBatch = (
      outbox: Outbox,
      batch: Array<Pending>,
      envelopes: Array<typeof WireEnvelope.Type>
    ): Effect.Effect<void> =>
      pool.call(outbox.pod.host, outbox.pod.port, config.sendTimeout, (client) => client.Send({ envelopes })).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.flip(fromCallError(outbox.pod)(error)).pipe(
              Effect.map((failure) => {
                for (const pending of batch) pending.fail(failure)
              })
            ),
          onSuccess: (results) =>
            Effect.sync(() => {
              for (let i = 0; i < batch.length; i++) {
                const result = results[i]
                const pending = batch[i]!
                if (result === undefined) pending.fail(unavailable(outbox.pod, false))
                else if (result[0] === 0) pending.succeed(MessageState.Acknowledged)
                else if (result[0] === 1) pending.succeed(MessageState.Processed(models.serializedMessage(result[1])))
                else pending.fail(result[1])
              }
            })
        }),
        // (interrupted: the Pods closed while the request was out; no answer came)
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            for (const pending of batch) pending.fail(unavailable(outbox.pod, false))
          })
        )
      )

    // One flush per outbox at a time takes what is queued once the senders of this tick have queued
    // (a yield first), so concurrent sends share a request.
    const flush = (outbox: Outbox): Effect.Effect<void> =>
      Effect.zipRight(
        Effect.yieldNow(),
        Effect.suspend(() => {
          outbox.flushing = false
          const batch = takeBatch(outbox, clock.unsafeCurrentTimeMillis(), limits)
          if (batch.length === 0) return Effect.void
          outbox.inFlight++
          outbox.batches.add(batch)
          schedule(outbox)
          const envelopes = batch.map((pending) => toWireEnvelope(pending.envelope))
          return Effect.ensuring(
            sendBatch(outbox, batch, envelopes),
            Effect.sync(() => {
              outbox.inFlight--
              outbox.batches.delete(batch)
              // Emptied once answered: an object of the request that the garbage collector placed in the
              // old generation (V8 does so for allocation sites it saw survive, e.g. during start-up) and
              // that died there holds the batch until the next full collection; full, the batch would keep
              // every sender's continuation and body alive through each scavenge, promoted in turn (the
              // sending pod's scavenges kept ~1.9 MB of every ~11 MB allocated, against ~0.9 MB now).
              batch.length = 0
              envelopes.length = 0
              schedule(outbox)
            })
          )
        })
      )

    const schedule = (outbox: Outbox): void => {
      if (outbox.flushing || outbox.inFlight >= maxBatchesInFlight || outbox.queue.length === 0) return
      outbox.flushing = true
      runFork(flush(outbox))
    }

    // The sender's wait: an interrupted sender leaves the queue if its envelope has not gone yet (the
    // batch taken next skips it). Its fiber is kept for that check instead of an interruption handler,
    // which would cost each send several fiber steps.
    const send: direct.SendThen = <B, E>(pod: PodAddress, envelope: SerializedEnvelope, then: direct.SendContinuation<B, E>) =>
      Effect.withFiberRuntime<B, E>((fiber, status) => {
        const size = envelope.body.value.length + envelope.recipientAddress.entityId.length +
          envelope.recipientAddress.recipientTypeName.length + envelope.messageId.length + 128
        if (size > maxBatchBytes) {
          return then.onFailure(
            new SerializationException({ error: `a message of ${size} bytes exceeds the transport's limit` })
          )
        }
        if (closed) return then.onFailure(unavailable(pod, true))
        const interruptible = RuntimeFlags.interruption(status.runtimeFlags)
        return Effect.async<B, E>((resume) => {
          const outbox = outboxOf(pod)
          const queuedAt = clock.unsafeCurrentTimeMillis()
          outbox.queue.push(
            new Pending(
              envelope,
              size,
              queuedAt,
              resume as (effect: Effect.Effect<unknown, unknown>) => void,
              then,
              interruptible ? fiber : undefined
            )
          )
          schedule(outbox)
        })
      })
    return send
  })

// The continuation of `Pods.sendAndGetState`: its outcome as it is.
const asItIs: direct.SendContinuation<MessageState.MessageState<SerializedMessage>, ShardingException> = {
  onFailure: Exit.fail,
  onSuccess: Exit.succeed
}

/**
 * Builds the network `Pods` (scoped: connections close with the scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Partial<BatchOptions>
): Effect.Effect<Pods, never, TransportConfig | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* TransportConfig
    const pool = yield* makePeerPool(ShardingRpcs, config)
    const send = yield* makeBatchedSend(pool, config, batchOptions(options))

    const control = (
      pod: PodAddress,
      timeout: Duration.Duration,
      f: Parameters<typeof pool.call<void, RequestRejected | PodUnavailableException>>[3]
    ) =>
      pool.call(pod.host, pod.port, timeout, f).pipe(
        Effect.catchAll((error) => error instanceof PodUnavailableException ? Effect.fail(error) : fromCallError(pod)(error))
      )

    const shardsOf = (shards: HashSet.HashSet<ShardId>) => Array.from(shards, (shard) => shard.value)

    const pods = Pods.of({
      assignShards: (pod, shards, epochs) =>
        control(pod, config.callTimeout, (client) =>
          client.AssignShards({ shards: shardsOf(shards), epochs: epochsToPairs(epochs) })),
      // A failure (timeout included) leaves the shards with the pod as far as the caller knows; the pod's
      // own refusal (nothing released) reaches the manager as it is.
      unassignShards: (pod, shards, epochs) =>
        control(pod, config.unassignTimeout, (client) =>
          client.UnassignShards({ shards: shardsOf(shards), epochs: epochsToPairs(epochs) })),
      ping: (pod) => control(pod, config.callTimeout, (client) => client.Ping()),
      sendAndGetState: (pod, envelope) => send(pod, envelope, asItIs)
    })
    direct.registerSender(pods, send)
    return pods
  })

/**
 * The network `Pods`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Partial<BatchOptions>): Layer.Layer<Pods, never, TransportConfig> =>
  Layer.scoped(Pods, make(options))
