/**
 * How the network `Pods` batches concurrent sends to one pod: a peer on a real loopback socket records the
 * size of every `Send` request it gets. What is queued is split over the free request slots (the pod works
 * on one batch while the sender handles the reply to another); an idle pod gets a lone send at once.
 */
import { MessageState, SerializedMessage } from "@effect-cluster/cluster"
import { PodsRpc, Transport } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { envelope, recordingPod } from "./utils/recordingPod.js"


const sendAll = (options: Partial<PodsRpc.BatchOptions>, count: number) =>
  Effect.gen(function*() {
    const sizes: Array<number> = []
    const pod = yield* recordingPod({ sizes })
    const pods = yield* PodsRpc.make(options).pipe(Effect.provide(Transport.withDefaults({})))
    // One send first: the connection is open before the concurrent ones are queued.
    yield* pods.sendAndGetState(pod, envelope(-1))
    sizes.length = 0
    const replies = yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => Effect.exit(pods.sendAndGetState(pod, envelope(i))),
      { concurrency: "unbounded" }
    )
    return { sizes, replies }
  })

describe("Send batching (network Pods, real loopback socket)", () => {
  it.scopedLive("concurrent sends are split over the free request slots, each answered with its own reply", () =>
    Effect.gen(function*() {
      const { replies, sizes } = yield* sendAll({ maxBatchesInFlight: 2 }, 64)
      // 64 queued with 2 free slots: two requests of 32 (one request of 64 would leave one side idle).
      expect(sizes).toEqual([32, 32])
      for (let i = 0; i < 64; i++) {
        const reply = replies[i]!
        const state = Exit.isSuccess(reply) ? reply.value : undefined
        expect(state !== undefined && MessageState.isProcessed(state) ? state.result.value : reply).toBe(`{"n":${i}}`)
      }
    }))

  it.scopedLive("the split respects maxBatchSize; every envelope is sent exactly once", () =>
    Effect.gen(function*() {
      const { sizes } = yield* sendAll({ maxBatchesInFlight: 2, maxBatchSize: 10 }, 64)
      expect(sizes.every((size) => size <= 10)).toBe(true)
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(64)
    }))

  it.scopedLive("limits below 1 count as 1: every send still goes, one per request", () =>
    Effect.gen(function*() {
      const { replies, sizes } = yield* sendAll({ maxBatchesInFlight: 0, maxBatchSize: 0 }, 4)
      expect(sizes).toEqual([1, 1, 1, 1])
      expect(replies.every(Exit.isSuccess)).toBe(true)
    }))

  // No limit on the requests in flight (Infinity), or a limit that is not a number (NaN, a misread
  // setting): every send still goes. The split's share of the queue over Infinity free slots was 0 (and
  // NaN for NaN): no envelope was ever taken, and every sender waited forever (not even its sendTimeout).
  for (const maxBatchesInFlight of [Number.POSITIVE_INFINITY, Number.NaN]) {
    it.scopedLive(`maxBatchesInFlight ${maxBatchesInFlight}: every send still goes`, () =>
      Effect.gen(function*() {
        const sent = yield* Effect.timeout(sendAll({ maxBatchesInFlight }, 4), "5 seconds")
        expect(sent.replies.every(Exit.isSuccess)).toBe(true)
        expect(sent.sizes.reduce((a, b) => a + b, 0)).toBe(4)
      }))
  }

  it.scopedLive("an idle pod gets a lone send at once, in a request of its own", () =>
    Effect.gen(function*() {
      const { sizes } = yield* sendAll({ maxBatchesInFlight: 2 }, 1)
      expect(sizes).toEqual([1])
    }))

  // A sender that is interrupted while its envelope waits in the outbox stops waiting, and its envelope is
  // not sent; a sender whose wait cannot be interrupted keeps its place and gets its reply.
  it.scopedLive("an interrupted sender's queued envelope is not sent; an uninterruptible one is", () =>
    Effect.gen(function*() {
      const held = yield* Deferred.make<void>()
      const received: Array<string> = []
      // Every request is held at the pod until `held` opens; one request at a time: what is sent meanwhile
      // waits in the outbox.
      const pod = yield* recordingPod({ received }, () => Deferred.await(held))
      const pods = yield* PodsRpc.make({ maxBatchesInFlight: 1 }).pipe(Effect.provide(Transport.withDefaults({})))
      const first = yield* Effect.fork(pods.sendAndGetState(pod, envelope(0)))
      while (!received.includes("m0")) yield* Effect.yieldNow()
      const interrupted = yield* Effect.fork(pods.sendAndGetState(pod, envelope(1)))
      const keptReply = yield* Deferred.make<Exit.Exit<MessageState.MessageState<SerializedMessage.SerializedMessage>, unknown>>()
      const kept = yield* Effect.fork(
        Effect.uninterruptible(Effect.flatMap(Effect.exit(pods.sendAndGetState(pod, envelope(2))), (exit) => Deferred.succeed(keptReply, exit)))
      )
      yield* Effect.yieldNow()
      expect(yield* Fiber.interrupt(interrupted)).toSatisfy(Exit.isInterrupted)
      yield* Fiber.interruptFork(kept)
      yield* Deferred.succeed(held, undefined)
      expect(yield* Fiber.join(first)).toEqual(MessageState.Processed(SerializedMessage.make(`{"n":0}`)))
      expect(yield* Deferred.await(keptReply)).toEqual(Exit.succeed(MessageState.Processed(SerializedMessage.make(`{"n":2}`))))
      expect(received).toEqual(["m0", "m2"])
    }))
})
