/**
 * The network `Pods`' continued send (`direct.SendThen`, registered by `PodsRpc.make`): the sender's
 * continuation runs in the batch fiber as the reply arrives, the sender resumes once with what it returns,
 * and an interrupted sender's queued envelope is skipped by the next batch (no interruption handler). Real
 * loopback sockets; a pod that records what it receives and can hold its replies.
 */
import { MessageState, PodAddress, RecipientAddress, SerializedEnvelope, SerializedMessage } from "@effect-cluster/cluster"
import type { ShardingException } from "@effect-cluster/cluster"
import { PodsRpc, Transport } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Option, Scope } from "effect"
import * as direct from "../src/internal/direct.js"
import { closedPort } from "./utils/network.js"
import { envelope, recordingPod } from "./utils/recordingPod.js"

type State = MessageState.MessageState<SerializedMessage.SerializedMessage>


const processed = (i: number) => MessageState.Processed(SerializedMessage.make(`{"n":${i}}`))

// A pod whose requests wait at a gate that can be closed (held) and opened again; one request in flight at a
// time, so that what is sent meanwhile waits in the outbox.
const setUp = (transport: Partial<Transport.TransportConfig> = {}) =>
  Effect.gen(function*() {
    const received: Array<string> = []
    let gate = yield* Deferred.make<void>()
    yield* Deferred.succeed(gate, undefined)
    const pod = yield* recordingPod({ received }, () => Deferred.await(gate))
    const pods = yield* PodsRpc.make({ maxBatchesInFlight: 1 }).pipe(Effect.provide(Transport.withDefaults(transport)))
    const send = direct.senderOf(pods)!
    // The connection is open before the test starts.
    yield* pods.sendAndGetState(pod, envelope(-1))
    received.length = 0
    // Holds the requests handled from now on until released (or until `held` is opened, whatever is held next).
    const hold = Effect.map(Deferred.make<void>(), (held) => {
      gate = held
      return held
    })
    const release = Effect.suspend(() => Deferred.succeed(gate, undefined))
    const until = (id: string) =>
      Effect.gen(function*() {
        while (!received.includes(id)) yield* Effect.yieldNow()
      })
    return { received, pod, pods, send, hold, release, until }
  })

// A continuation that counts its calls and answers as it is.
const counting = () => {
  const calls = { failure: 0, success: 0 }
  const then: direct.SendContinuation<State, ShardingException.ShardingException> = {
    onFailure: (error) => {
      calls.failure++
      return Exit.fail(error)
    },
    onSuccess: (state) => {
      calls.success++
      return Exit.succeed(state)
    }
  }
  return { calls, then }
}

describe("Continued sends over the network Pods (real loopback socket)", () => {
  it.scopedLive("the registered sender is there, and a reply goes through its continuation once", () =>
    Effect.gen(function*() {
      const { pod, send } = yield* setUp()
      const { calls, then } = counting()
      expect(yield* send(pod, envelope(1), then)).toEqual(processed(1))
      expect(calls).toEqual({ failure: 0, success: 1 })
    }))

  it.scopedLive("a sender interrupted while its batch is in flight stops waiting at once; the late reply disturbs no one", () =>
    Effect.gen(function*() {
      const { hold, pod, received, release, send, until } = yield* setUp()
      yield* hold
      const { calls, then } = counting()
      const inFlight = yield* Effect.fork(send(pod, envelope(1), then))
      yield* until("m1")
      // Interrupted while the pod holds its request: the interruption does not wait for the reply.
      expect(yield* Fiber.interrupt(inFlight)).toSatisfy(Exit.isInterrupted)
      const next = yield* Effect.fork(send(pod, envelope(2), counting().then))
      yield* release
      expect(yield* Fiber.join(next)).toEqual(processed(2))
      expect(received).toEqual(["m1", "m2"])
      // (its continuation ran at most once, in the batch fiber; its result went nowhere)
      expect(calls.success + calls.failure).toBeLessThanOrEqual(1)
    }))

  it.scopedLive("Effect.timeout around a queued send: it times out, and its envelope is never sent", () =>
    Effect.gen(function*() {
      const { hold, pod, pods, received, release, until } = yield* setUp()
      yield* hold
      const first = yield* Effect.fork(pods.sendAndGetState(pod, envelope(1)))
      yield* until("m1")
      // Queued behind the held request: it cannot go before the timeout.
      const timedOut = yield* Effect.timeoutOption(pods.sendAndGetState(pod, envelope(2)), Duration.millis(50))
      expect(Option.isNone(timedOut)).toBe(true)
      yield* release
      expect(yield* Fiber.join(first)).toEqual(processed(1))
      expect(yield* pods.sendAndGetState(pod, envelope(3))).toEqual(processed(3))
      expect(received).toEqual(["m1", "m3"])
    }))

  it.scopedLive("a continuation that throws: its sender dies with the defect; the batch's other senders get their replies", () =>
    Effect.gen(function*() {
      const { hold, pod, received, release, send, until } = yield* setUp()
      yield* hold
      const first = yield* Effect.fork(send(pod, envelope(0), counting().then))
      yield* until("m0")
      const boom = new Error("boom")
      const throwing: direct.SendContinuation<State, never> = {
        onFailure: () => {
          throw boom
        },
        onSuccess: () => {
          throw boom
        }
      }
      // Queued together: one batch of three once the first request is answered.
      const before = yield* Effect.fork(send(pod, envelope(1), counting().then))
      const thrower = yield* Effect.fork(send(pod, envelope(2), throwing))
      const after = yield* Effect.fork(send(pod, envelope(3), counting().then))
      yield* Effect.yieldNow()
      yield* release
      expect(yield* Fiber.join(first)).toEqual(processed(0))
      expect(yield* Fiber.join(before)).toEqual(processed(1))
      expect(yield* Fiber.await(thrower)).toEqual(Exit.die(boom))
      expect(yield* Fiber.join(after)).toEqual(processed(3))
      expect(received).toEqual(["m0", "m1", "m2", "m3"])
    }))

  it.scopedLive("a continuation's retry (a wait, then another send): interrupted during the wait, the retry's envelope never goes", () =>
    Effect.gen(function*() {
      const { pod, pods, received, send } = yield* setUp()
      const waiting = yield* Deferred.make<void>()
      let calls = 0
      const retrying: direct.SendContinuation<State, ShardingException.ShardingException> = {
        onFailure: Exit.fail,
        onSuccess: () => {
          calls++
          // As a delivery's retry: a wait (here one that never ends), then another attempt.
          return Effect.zipRight(
            Effect.zipRight(Deferred.succeed(waiting, undefined), Effect.never),
            pods.sendAndGetState(pod, envelope(2))
          )
        }
      }
      const sender = yield* Effect.fork(send(pod, envelope(1), retrying))
      yield* Deferred.await(waiting)
      expect(yield* Fiber.interrupt(sender)).toSatisfy(Exit.isInterrupted)
      expect(yield* pods.sendAndGetState(pod, envelope(3))).toEqual(processed(3))
      expect(received).toEqual(["m1", "m3"])
      expect(calls).toBe(1)
    }))

  it.scopedLive("a continuation's retry whose envelope is queued: interrupted there, that envelope is skipped", () =>
    Effect.gen(function*() {
      const { hold, pod, pods, received, send, until } = yield* setUp()
      const goRetry = yield* Deferred.make<void>()
      const retrying = yield* Deferred.make<void>()
      const retry: direct.SendContinuation<State, ShardingException.ShardingException> = {
        onFailure: Exit.fail,
        onSuccess: () =>
          Effect.zipRight(
            Effect.zipRight(Deferred.await(goRetry), Deferred.succeed(retrying, undefined)),
            pods.sendAndGetState(pod, envelope(2))
          )
      }
      const first = yield* hold
      const sender = yield* Effect.fork(send(pod, envelope(1), retry))
      yield* until("m1")
      const other = yield* Effect.fork(pods.sendAndGetState(pod, envelope(0)))
      yield* Effect.yieldNow()
      // The next request (m0) is held at a second gate; m1 is answered, its continuation waits for goRetry.
      const second = yield* hold
      yield* Deferred.succeed(first, undefined)
      yield* until("m0")
      // The retry's envelope waits in the outbox behind m0 (one request at a time).
      yield* Deferred.succeed(goRetry, undefined)
      yield* Deferred.await(retrying)
      expect(yield* Fiber.interrupt(sender)).toSatisfy(Exit.isInterrupted)
      yield* Deferred.succeed(second, undefined)
      expect(yield* Fiber.join(other)).toEqual(processed(0))
      expect(yield* pods.sendAndGetState(pod, envelope(3))).toEqual(processed(3))
      expect(received).toEqual(["m1", "m0", "m3"])
    }))

  it.scopedLive("an interrupted fiber's uninterruptible finalizer sends: its envelope goes (even queued), and it gets the reply", () =>
    Effect.gen(function*() {
      const { hold, pod, pods, received, release, until } = yield* setUp()
      yield* hold
      const first = yield* Effect.fork(pods.sendAndGetState(pod, envelope(1)))
      yield* until("m1")
      const started = yield* Deferred.make<void>()
      const reply = yield* Deferred.make<Exit.Exit<State, ShardingException.ShardingException>>()
      const finalizing = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        Effect.ensuring(
          Effect.zipRight(Deferred.succeed(started, undefined), Effect.never),
          Effect.zipRight(
            Deferred.succeed(finalizing, undefined),
            Effect.flatMap(Effect.exit(pods.sendAndGetState(pod, envelope(2))), (exit) => Deferred.succeed(reply, exit))
          )
        )
      )
      yield* Deferred.await(started)
      // Interrupted: the finalizer queues its envelope behind the held request, in a fiber already interrupted
      // (queued in the same step as `finalizing` completes).
      yield* Fiber.interruptFork(fiber)
      yield* Deferred.await(finalizing)
      expect(received).toEqual(["m1"])
      yield* release
      expect(yield* Fiber.join(first)).toEqual(processed(1))
      expect(yield* Deferred.await(reply)).toEqual(Exit.succeed(processed(2)))
      expect(yield* Fiber.await(fiber)).toSatisfy(Exit.isInterrupted)
      expect(received).toEqual(["m1", "m2"])
    }))

  it.scopedLive("uninterruptibleMask: a send after an interrupted restore(...) in the same fiber goes and is answered", () =>
    Effect.gen(function*() {
      const { hold, pod, pods, received, release, until } = yield* setUp()
      yield* hold
      const started = yield* Deferred.make<void>()
      const reply = yield* Deferred.make<Exit.Exit<State, ShardingException.ShardingException>>()
      const masked = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        Effect.uninterruptibleMask((restore) =>
          Effect.zipRight(
            // The interruptible part waits for its own reply (held): it is interrupted in flight.
            Effect.exit(restore(Effect.zipRight(Deferred.succeed(started, undefined), pods.sendAndGetState(pod, envelope(1))))),
            Effect.zipRight(
              Deferred.succeed(masked, undefined),
              Effect.flatMap(Effect.exit(pods.sendAndGetState(pod, envelope(2))), (exit) => Deferred.succeed(reply, exit))
            )
          )
        )
      )
      yield* Deferred.await(started)
      yield* until("m1")
      yield* Fiber.interruptFork(fiber)
      // The second send is queued (behind the held m1) by a fiber already interrupted.
      yield* Deferred.await(masked)
      expect(received).toEqual(["m1"])
      yield* release
      expect(yield* Deferred.await(reply)).toEqual(Exit.succeed(processed(2)))
      expect(yield* Fiber.await(fiber)).toSatisfy(Exit.isInterrupted)
      expect(received).toEqual(["m1", "m2"])
    }))

  it.scopedLive("a batch whose request fails: every sender's continuation runs once, with the failure, and none hangs", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const pods = yield* PodsRpc.make({ maxBatchesInFlight: 1 }).pipe(
        Effect.provide(Transport.withDefaults({ sendTimeout: Duration.seconds(5) }))
      )
      const send = direct.senderOf(pods)!
      const pod = PodAddress.make("127.0.0.1", port)
      const continuations = Array.from({ length: 20 }, counting)
      const exits = yield* Effect.timeoutFail(
        Effect.forEach(continuations, ({ then }, i) => Effect.exit(send(pod, envelope(i), then)), { concurrency: "unbounded" }),
        { duration: "20 seconds", onTimeout: () => "a sender hung" as const }
      )
      for (const exit of exits) {
        expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag))).toEqual(
          Option.some("PodUnavailableException")
        )
      }
      expect(continuations.map(({ calls }) => calls)).toEqual(continuations.map(() => ({ failure: 1, success: 0 })))
    }))

  it.scopedLive("a send effect run twice sends twice, and resumes each run with its own reply", () =>
    Effect.gen(function*() {
      const { pod, pods, received, send } = yield* setUp()
      const { calls, then } = counting()
      const once = send(pod, envelope(1), then)
      expect(yield* once).toEqual(processed(1))
      expect(yield* once).toEqual(processed(1))
      const plain = pods.sendAndGetState(pod, envelope(2))
      yield* plain
      yield* plain
      expect(received).toEqual(["m1", "m1", "m2", "m2"])
      expect(calls).toEqual({ failure: 0, success: 2 })
    }))

  it.scopedLive("an oversized envelope fails at once through the continuation (typed, not sent)", () =>
    Effect.gen(function*() {
      const { pod, received, send } = yield* setUp({ maxMessageBytes: 4096 })
      const { calls, then } = counting()
      const big = SerializedEnvelope.make(
        RecipientAddress.makeRecipientAddress("Counter", "big"),
        "big",
        SerializedMessage.make("x".repeat(10_000))
      )
      const error = yield* Effect.flip(send(pod, big, then))
      expect(error._tag).toBe("SerializationException")
      expect(calls).toEqual({ failure: 1, success: 0 })
      expect(received).toEqual([])
    }))
})

describe("Continued sends when the network Pods closes", () => {
  // The Pods' scope closes (its pod shuts down) while a sender waits: queued behind a held request, or with
  // its own request in flight. Each sender must be answered (PodUnavailableException), not left waiting for
  // a batch fiber that was interrupted; a send made after the close fails at once.
  it.scopedLive("senders waiting when the Pods closes are answered; a send after the close fails at once", () =>
    Effect.gen(function*() {
      const received: Array<string> = []
      const held = yield* Deferred.make<void>()
      const pod = yield* recordingPod({ received }, () => Deferred.await(held))
      const scope = yield* Scope.make()
      const pods = yield* PodsRpc.make({ maxBatchesInFlight: 1 }).pipe(
        Effect.provide(Transport.withDefaults({ sendTimeout: Duration.seconds(30) })),
        Scope.extend(scope)
      )
      // Uninterruptible waits: only an answer ends them. (Daemons: a sender never answered does not hold up
      // the test's end.)
      const inFlight = yield* Effect.forkDaemon(Effect.uninterruptible(Effect.exit(pods.sendAndGetState(pod, envelope(1)))))
      while (!received.includes("m1")) yield* Effect.yieldNow()
      const queued = yield* Effect.forkDaemon(Effect.uninterruptible(Effect.exit(pods.sendAndGetState(pod, envelope(2)))))
      yield* Effect.yieldNow()
      yield* Effect.timeoutFail(Scope.close(scope, Exit.void), { duration: "10 seconds", onTimeout: () => "the close hung" as const }).pipe(
        Effect.ensuring(Deferred.succeed(held, undefined))
      )
      const answers = yield* Effect.timeoutFail(
        Effect.all([Fiber.join(inFlight), Fiber.join(queued)]),
        { duration: "10 seconds", onTimeout: () => "a sender was never answered" as const }
      )
      const outcome = (exit: Exit.Exit<unknown, ShardingException.ShardingException>) =>
        Exit.isFailure(exit)
          ? Option.map(Cause.failureOption(exit.cause), (e) => [e._tag, (e as ShardingException.PodUnavailableException).notDelivered])
          : Option.none()
      // In flight: it may have been handled (outcome unknown); queued: certainly not delivered.
      expect(answers.map(outcome)).toEqual([
        Option.some(["PodUnavailableException", false]),
        Option.some(["PodUnavailableException", true])
      ])
      const after = yield* Effect.timeoutFail(Effect.exit(pods.sendAndGetState(pod, envelope(3))), {
        duration: "10 seconds",
        onTimeout: () => "a send after the close was never answered" as const
      })
      expect(outcome(after)).toEqual(Option.some(["PodUnavailableException", true]))
      expect(received).toEqual(["m1"])
    }))
})

describe("Continued sends: the send timeout", () => {
  // A timeout longer than a timer can hold (2^31 - 1 ms, about 24.8 days; Node fires a longer timer after
  // 1 ms) is no timeout: the send waits for its reply.
  for (const sendTimeout of [Duration.days(30), Duration.infinity]) {
    it.scopedLive(`a send timeout of ${Duration.format(sendTimeout)} does not end the wait at once`, () =>
      Effect.gen(function*() {
        const { hold, pod, pods, received, release, until } = yield* setUp({ sendTimeout })
        yield* hold
        const sender = yield* Effect.fork(pods.sendAndGetState(pod, envelope(1)))
        yield* until("m1")
        // The request reached the pod (a round trip later than a 1 ms timer): the sender still waits.
        for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
        expect(Option.isNone(yield* Fiber.poll(sender))).toBe(true)
        yield* release
        expect(yield* Fiber.join(sender)).toEqual(processed(1))
        expect(received).toEqual(["m1"])
      }))
  }
})
