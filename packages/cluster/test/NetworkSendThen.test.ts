/**
 * Cross-pod sends through the messenger over the network transport, where the sender's continuation (reply
 * decoding, the acknowledged-then-ask-again loop, the message's result) runs as the reply arrives: two pods
 * and a manager in this process, on real loopback sockets.
 */
import { Message, RecipientBehaviour, RecipientType, Sharding, ShardingException, Storage } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Queue, Schema, Scope } from "effect"
import { Counter, counterBehaviour, freshId, GetCount, Increment } from "./utils/counter.js"
import { balanced, entityOn, eventuallyLive, type NetworkPod, portOf, startManager, startPod } from "./utils/network.js"

const numberOfShards = 12

// The sender's view of Counter's GetCount with another reply schema: the owner's reply (a number) does not
// decode as a string on the sender.
class GetCountAsText extends Message.TaggedMessage<GetCountAsText>()(
  "GetCount",
  Schema.Never,
  Schema.String,
  { messageId: Schema.String },
  (_) => _.messageId
) {}
const CounterAsText = RecipientType.makeEntityType("Counter", GetCountAsText)

class Job extends Message.TaggedMessage<Job>()("Job", Schema.Never, Schema.String, { id: Schema.String }, (_) => _.id) {}
const Jobs = RecipientType.makeEntityType("Jobs", Job)

// A hang detector, not a latency assertion.
const returns = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => "the call hung" as const })

// The owner registers `setup` and takes every shard first; the sender (no entity types) joins after and takes
// half. Returns both and the id of an entity on the owner.
const twoPods = (setup: Effect.Effect<void, never, Sharding.Sharding>, typeName: string) =>
  Effect.gen(function*() {
    const manager = yield* startManager({ manager: { numberOfShards } })
    const sharding = { numberOfShards, sendRetryInterval: Duration.millis(20) }
    const owner: NetworkPod = yield* startPod({ managerUri: manager.uri, sharding, setup })
    yield* eventuallyLive(Effect.map(owner.sharding.getAssignedShardIds, (s) => Array.from(s).length === numberOfShards))
    const sender: NetworkPod = yield* startPod({ managerUri: manager.uri, sharding })
    yield* balanced([owner, sender], numberOfShards)
    return { owner, sender, id: yield* entityOn(owner, typeName, "x") }
  })

describe("Cross-pod sends over the network transport: the continuation as the reply arrives", () => {
  it.scopedLive("a reply that does not decode on the sender is a typed SerializationException (stage reply), not a defect, and is not retried", () =>
    Effect.gen(function*() {
      let runs = 0
      const { id, sender } = yield* twoPods(
        Sharding.registerEntity(Counter)(counterBehaviour({ onMessage: () => Effect.sync(() => void runs++) })),
        Counter.name
      )
      const exit = yield* returns(Effect.exit(sender.sharding.messenger(CounterAsText).send(id)(new GetCountAsText({ messageId: freshId() }))))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      expect(Option.isSome(error)).toBe(true)
      const failure = Option.getOrThrow(error) as ShardingException.SerializationException
      expect(failure._tag).toBe("SerializationException")
      expect(failure.stage).toBe("reply")
      expect(runs).toBe(1)
      // And the right schema gets the number.
      expect(yield* returns(sender.sharding.messenger(Counter).send(id)(new Increment({ messageId: freshId(), by: 4 })))).toBe(4)
      expect(yield* returns(sender.sharding.messenger(Counter).send(id)(new GetCount({ messageId: freshId() })))).toBe(4)
    }))

  it.scopedLive("an acknowledged send asks again until the result is there, then resumes with it (the handler runs once)", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const { id, sender } = yield* twoPods(
        Sharding.registerEntity(Jobs)(RecipientBehaviour.fromInMemoryQueue((_, dequeue, processed) =>
          Effect.forever(Effect.gen(function*() {
            const message = yield* Queue.take(dequeue)
            if (message._tag !== "Job") return yield* Effect.interrupt
            handled.push(message.id)
            yield* Deferred.await(gate)
            yield* processed(message, Option.some(Exit.succeed(`done ${message.id}`)))
          }))
        )),
        Jobs.name
      )
      const send = yield* Effect.fork(sender.sharding.messenger(Jobs).send(id)(new Job({ id: "job-1" })))
      yield* eventuallyLive(Effect.sync(() => handled.length === 1))
      // Acknowledged (queued, not processed): the sender goes on asking.
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(send))).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* returns(Fiber.join(send))).toBe("done job-1")
      expect(handled).toEqual(["job-1"])
    }))

  it.scopedLive("a sender in the ask-again loop stops at its Effect.timeout; the pod's sends go on working", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const { id, owner, sender } = yield* twoPods(
        Effect.zipRight(
          Sharding.registerEntity(Jobs)(RecipientBehaviour.fromInMemoryQueue((_, dequeue) =>
            Effect.forever(Effect.gen(function*() {
              const message = yield* Queue.take(dequeue)
              if (message._tag !== "Job") return yield* Effect.interrupt
              handled.push(message.id)
              // never processed
            }))
          )),
          Sharding.registerEntity(Counter)(counterBehaviour())
        ),
        Jobs.name
      )
      const timedOut = yield* returns(
        Effect.timeoutOption(sender.sharding.messenger(Jobs).send(id)(new Job({ id: "job-1" })), Duration.millis(300))
      )
      expect(Option.isNone(timedOut)).toBe(true)
      expect(handled).toEqual(["job-1"])
      // Another cross-pod send, uninterruptible, still gets its answer.
      const c = yield* entityOn(owner, Counter.name, "c")
      expect(yield* returns(Effect.uninterruptible(sender.sharding.messenger(Counter).send(c)(new Increment({ messageId: freshId(), by: 2 }))))).toBe(2)
    }))

  // sendDiscard asks for no result: a reply that would not decode with the sender's schemas is no failure of
  // it. Locally (no serialization) it succeeds; remotely it failed with the reply's SerializationException,
  // although the message was handled: the same message, two answers depending on where the entity lives.
  it.scopedLive("sendDiscard of a message whose reply the sender cannot decode: succeeds remotely as it does locally", () =>
    Effect.gen(function*() {
      let runs = 0
      const { id, owner, sender } = yield* twoPods(
        Sharding.registerEntity(Counter)(counterBehaviour({ onMessage: () => Effect.sync(() => void runs++) })),
        Counter.name
      )
      // Locally, on the owner:
      yield* returns(owner.sharding.messenger(CounterAsText).sendDiscard(id)(new GetCountAsText({ messageId: freshId() })))
      expect(runs).toBe(1)
      // Remotely, from the sender:
      const remote = yield* returns(
        Effect.exit(sender.sharding.messenger(CounterAsText).sendDiscard(id)(new GetCountAsText({ messageId: freshId() })))
      )
      expect(runs).toBe(2)
      expect(remote).toEqual(Exit.void)
    }))

  // The owner leaves while the manager is down (its unregistration fails): the sender's routing table still
  // sends its shards to it, and nobody listens there. Each attempt fails as not delivered (the reply's
  // continuation, in the batch fiber, reports the pod and decides the retry); the send gives up at
  // sendRetryTimeout with MessageNotDeliveredException.
  it.scopedLive("a pod nobody listens on: retries until sendRetryTimeout, then MessageNotDelivered (also uninterruptible, and sendDiscard)", () =>
    Effect.gen(function*() {
      const managerScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        NodeCluster.layerManager({ manager: { apiPort: 0, numberOfShards } }).pipe(Layer.provide(Storage.memory)),
        managerScope
      ).pipe(Effect.orDie)
      const uri = `http://127.0.0.1:${portOf(context)}`
      const sharding = { numberOfShards, sendRetryInterval: Duration.millis(50), sendRetryTimeout: Duration.millis(600) }
      const transport = { callTimeout: Duration.millis(300) }
      const owner: NetworkPod = yield* startPod({
        managerUri: uri,
        sharding,
        transport,
        setup: Sharding.registerEntity(Counter)(counterBehaviour())
      })
      yield* eventuallyLive(Effect.map(owner.sharding.getAssignedShardIds, (s) => Array.from(s).length === numberOfShards))
      const sender: NetworkPod = yield* startPod({ managerUri: uri, sharding, transport })
      yield* balanced([owner, sender], numberOfShards)
      const id = yield* entityOn(owner, Counter.name, "x")
      expect(yield* returns(sender.sharding.messenger(Counter).send(id)(new Increment({ messageId: freshId(), by: 1 })))).toBe(1)
      yield* Scope.close(managerScope, Exit.void)
      yield* returns(owner.close)
      const messenger = sender.sharding.messenger(Counter)
      for (
        const send of [
          messenger.send(id)(new GetCount({ messageId: freshId() })),
          Effect.uninterruptible(messenger.send(id)(new GetCount({ messageId: freshId() }))),
          messenger.sendDiscard(id)(new Increment({ messageId: freshId(), by: 1 }))
        ]
      ) {
        const error = (yield* returns(Effect.flip(send))) as ShardingException.ShardingException
        expect(error._tag).toBe("MessageNotDeliveredException")
        expect((error as ShardingException.MessageNotDeliveredException).attempts).toBeGreaterThan(2)
      }
    }))
})
