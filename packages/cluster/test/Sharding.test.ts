import {
  Message,
  MessageState,
  PoisonPill,
  RecipientBehaviour,
  RecipientType,
  Sharding,
  ShardingConfig,
  ShardingException
} from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import {
  Context,
  Deferred,
  Duration,
  Either,
  Effect,
  Exit,
  Fiber,
  HashMap,
  HashSet,
  Layer,
  Option,
  Queue,
  Ref,
  Schema,
  Scope,
  TestClock
} from "effect"
import { settle, singlePod as singlePodWith } from "./utils/cluster.js"
import { Counter, counterBehaviour, Crash, Fail, freshId, GetCount, Increment } from "./utils/counter.js"

// A 2024-style single pod: every layer name as in 2024.
const singlePod = (config: Partial<ShardingConfig.ShardingConfig> = {}) =>
  singlePodWith({ entityTerminationTimeout: Duration.seconds(4), ...config })

class Ping extends Message.TaggedMessage<Ping>()("Ping", Schema.Never, Schema.String, { id: Schema.String }, (_) => _.id) {}
const Pinger = RecipientType.makeEntityType("Pinger", Ping)
const Topic = RecipientType.makeTopicType("Topic", Schema.Union(Increment, GetCount))

/** Runs `f` inside a pod whose scope the test closes itself (so it can drive the clock while it closes). */
const withPod = <A, E>(
  config: Partial<ShardingConfig.ShardingConfig>,
  f: (close: Effect.Effect<void>) => Effect.Effect<A, E, Sharding.Sharding | Scope.Scope>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(singlePod(config), scope)
    const inner = yield* Scope.make()
    return yield* f(Scope.close(inner, Exit.void).pipe(Effect.zipRight(Scope.close(scope, Exit.void)))).pipe(
      Effect.provide(context),
      Scope.extend(inner)
    )
  })

describe("Sharding (single pod, 2024 layers)", () => {
  it.scoped("delivers a message with sendDiscard", () =>
    Effect.gen(function*() {
      const received = yield* Ref.make<Array<string>>([])
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour({
        onMessage: (entityId, message) => Ref.update(received, (list) => [...list, `${entityId}:${message._tag}`])
      }))
      const messenger = yield* Sharding.messenger(Counter)
      yield* messenger.sendDiscard("e1")(new Increment({ messageId: freshId(), by: 1 }))
      expect(yield* Ref.get(received)).toEqual(["e1:Increment"])
    }).pipe(Effect.provide(singlePod())))

  it.scoped("fails with EntityTypeNotRegisteredException for an unknown type", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      const messenger = yield* Sharding.messenger(Counter)
      const error = yield* Effect.flip(messenger.send("e1")(new GetCount({ messageId: freshId() })))
      expect(error).toBeInstanceOf(ShardingException.EntityTypeNotRegisteredException)
      expect((error as ShardingException.EntityTypeNotRegisteredException).entityType).toBe("Counter")
    }).pipe(Effect.provide(singlePod())))

  it.scoped("routes to the right entity and returns its reply", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour())
      const messenger = yield* Sharding.messenger(Counter)
      yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 2 }))
      yield* messenger.send("b")(new Increment({ messageId: freshId(), by: 40 }))
      yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 1 }))
      expect(yield* messenger.send("a")(new GetCount({ messageId: freshId() }))).toBe(3)
      expect(yield* messenger.send("b")(new GetCount({ messageId: freshId() }))).toBe(40)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("puts a message's typed failure in the error channel and a defect in ExceptionWhileOfferingMessage", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour())
      const messenger = yield* Sharding.messenger(Counter)
      const failure = yield* Effect.flip(messenger.send("a")(new Fail({ messageId: freshId(), reason: "custom-error" })))
      expect(failure).toBe("custom-error")
      const defect = yield* Effect.flip(messenger.send("a")(new Crash({ messageId: freshId() })))
      expect(defect).toBeInstanceOf(ShardingException.ExceptionWhileOfferingMessageException)
      expect((defect as ShardingException.ExceptionWhileOfferingMessageException).error).toContain("boom")
      // The entity survives its handler's defect.
      expect(yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 5 }))).toBe(5)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("processes a retried message (same primary key) once per entity lifetime", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour())
      const messenger = yield* Sharding.messenger(Counter)
      const message = new Increment({ messageId: "once", by: 10 })
      expect(yield* messenger.send("a")(message)).toBe(10)
      expect(yield* messenger.send("a")(message)).toBe(10)
      expect(yield* messenger.send("a")(new Increment({ messageId: "once", by: 10 }))).toBe(10)
      expect(yield* messenger.send("a")(new GetCount({ messageId: freshId() }))).toBe(10)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("answers a retried message with its remembered reply: a typed failure, a void success, a value", () =>
    Effect.gen(function*() {
      const handled = yield* Ref.make(0)
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour({ onMessage: () => Ref.update(handled, (n) => n + 1) }))
      const messenger = yield* Sharding.messenger(Counter)
      for (let round = 0; round < 2; round++) {
        // Several keys, so that the replies live in the per-entity Map (the first is stored inline).
        expect(yield* Effect.flip(messenger.send("a")(new Fail({ messageId: "f1", reason: "no" })))).toBe("no")
        expect(yield* messenger.send("a")(new Fail({ messageId: "f2", reason: "unused" })).pipe(Effect.flip)).toBe("unused")
        expect(yield* messenger.send("a")(new Increment({ messageId: "i1", by: 5 }))).toBe(5)
        expect(yield* messenger.send("a")(new GetCount({ messageId: "g1" }))).toBe(5)
      }
      expect(yield* Ref.get(handled)).toBe(4)
      // Single remembered reply (inline): a void success.
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) =>
        Effect.as(Ref.update(handled, (n) => n + 1), MessageState.Processed(Exit.void as Exit.Exit<any>))
      ))
      const pinger = yield* Sharding.messenger(Pinger)
      yield* pinger.send("p")(new Ping({ id: "v" }))
      expect(yield* pinger.send("p")(new Ping({ id: "v" }))).toBe(undefined)
      expect(yield* Ref.get(handled)).toBe(5)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("forgets the oldest replies beyond entityDeduplicationCapacity", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour())
      const messenger = yield* Sharding.messenger(Counter)
      yield* messenger.send("a")(new Increment({ messageId: "k1", by: 1 }))
      yield* messenger.send("a")(new Increment({ messageId: "k2", by: 1 }))
      yield* messenger.send("a")(new Increment({ messageId: "k3", by: 1 }))
      // k1 was evicted (capacity 2): processed again; k3 is still remembered.
      expect(yield* messenger.send("a")(new Increment({ messageId: "k1", by: 1 }))).toBe(4)
      expect(yield* messenger.send("a")(new Increment({ messageId: "k3", by: 1 }))).toBe(3)
    }).pipe(Effect.provide(singlePod({ entityDeduplicationCapacity: 2 }))))

  it.scoped("broadcasts to a topic on every pod (here one)", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerTopic(Topic)(counterBehaviour() as RecipientBehaviour.RecipientBehaviour<Increment | GetCount>)
      const broadcaster = yield* Sharding.broadcaster(Topic)
      yield* broadcaster.broadcastDiscard("t")(new Increment({ messageId: freshId(), by: 1 }))
      const replies = yield* broadcaster.broadcast("t")(new GetCount({ messageId: freshId() }))
      expect(HashMap.size(replies)).toBe(1)
      expect(Array.from(HashMap.values(replies))).toEqual([Either.right(1)])
    }).pipe(Effect.provide(singlePod())))

  it.effect("delivers a PoisonPill to a mailbox entity when the pod unregisters, and waits for it", () =>
    withPod({}, (close) =>
      Effect.gen(function*() {
        const stopped = yield* Deferred.make<void>()
        yield* Sharding.registerScoped
        yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromInMemoryQueue((_, dequeue, processed) =>
          Effect.forever(Effect.gen(function*() {
            const message = yield* Queue.take(dequeue)
            if (message._tag === "@effect/cluster/PoisonPill") {
              yield* Effect.sleep("3 seconds") // a slow but bounded shutdown (< entityTerminationTimeout)
              yield* Deferred.succeed(stopped, undefined)
              return yield* Effect.interrupt
            }
            yield* processed(message, Option.some(Exit.succeed("pong")))
          }))
        ))
        const messenger = yield* Sharding.messenger(Pinger)
        yield* messenger.sendDiscard("p")(new Ping({ id: freshId() }))
        const closing = yield* Effect.fork(close)
        yield* settle
        expect(yield* Deferred.isDone(stopped)).toBe(false)
        yield* TestClock.adjust("3 seconds")
        yield* Fiber.join(closing)
        expect(yield* Deferred.isDone(stopped)).toBe(true)
      })))

  it.scoped("answers send for a mailbox entity once it reports the message processed (fixed 2024 Option bug)", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromInMemoryQueue((_, dequeue, processed) =>
        Effect.forever(Effect.gen(function*() {
          const message = yield* Queue.take(dequeue)
          if (message._tag === "@effect/cluster/PoisonPill") return yield* Effect.interrupt
          yield* processed(message, message.id === "none" ? Option.none() : Option.some(Exit.succeed(`pong-${message.id}`)))
        }))
      ))
      const messenger = yield* Sharding.messenger(Pinger)
      const reply = yield* Effect.fork(messenger.send("p")(new Ping({ id: "1" })))
      yield* TestClock.adjust("100 millis") // one poll of the Acknowledged message
      expect(yield* Fiber.join(reply)).toBe("pong-1")
      const none = yield* Effect.fork(Effect.flip(messenger.send("p")(new Ping({ id: "none" }))))
      yield* TestClock.adjust("100 millis")
      expect(yield* Fiber.join(none)).toBeInstanceOf(ShardingException.NoResultInProcessedMessageStateException)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("keeps waiting (polling, deduplicated) for a reply that never comes, until the caller's timeout", () =>
    Effect.gen(function*() {
      const offered = yield* Ref.make(0)
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromInMemoryQueue((_, dequeue) =>
        Effect.forever(Effect.zipRight(PoisonPill.takeOrInterrupt(dequeue), Ref.update(offered, (n) => n + 1)))
      ))
      const messenger = yield* Sharding.messenger(Pinger)
      const fiber = yield* Effect.fork(messenger.send("p")(new Ping({ id: "x" })).pipe(Effect.timeout("1 second")))
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("TimeoutException")
      expect(yield* Ref.get(offered)).toBe(1) // polled ~10 times, enqueued once
    }).pipe(Effect.provide(singlePod())))

  it.scoped("passivates an idle entity after entityMaxIdleTime and starts it again on the next message", () =>
    Effect.gen(function*() {
      const starts = yield* Ref.make(0)
      const stops = yield* Ref.make(0)
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(
        counterBehaviour({
          onStart: () => Ref.update(starts, (n) => n + 1),
          onStop: () => Ref.update(stops, (n) => n + 1)
        }),
        { entityMaxIdleTime: Option.some(Duration.seconds(10)) }
      )
      const sharding = yield* Sharding.Sharding
      const messenger = sharding.messenger(Counter)
      yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 1 }))
      yield* TestClock.adjust("6 seconds")
      yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 1 })) // activity resets the idle time
      yield* TestClock.adjust("6 seconds")
      yield* settle
      expect(yield* Ref.get(stops)).toBe(0)
      yield* TestClock.adjust("6 seconds")
      yield* settle
      expect(yield* Ref.get(stops)).toBe(1)
      expect(yield* sharding.localEntityCount).toBe(0)
      expect(yield* messenger.send("a")(new GetCount({ messageId: freshId() }))).toBe(0) // fresh instance
      expect(yield* Ref.get(starts)).toBe(2)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("rejects a message with MailboxFullException when the mailbox is at capacity", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour({ onMessage: () => Deferred.await(gate) }))
      const messenger = yield* Sharding.messenger(Counter)
      const first = yield* Effect.fork(messenger.send("a")(new Increment({ messageId: freshId(), by: 1 })))
      const second = yield* Effect.fork(messenger.send("a")(new Increment({ messageId: freshId(), by: 1 })))
      yield* settle
      const third = yield* Effect.flip(messenger.send("a")(new Increment({ messageId: freshId(), by: 1 })))
      expect(third).toBeInstanceOf(ShardingException.MailboxFullException)
      expect(ShardingException.deliveryOutcome(third as ShardingException.ShardingException)).toBe("NotDelivered")
      yield* Deferred.succeed(gate, undefined)
      expect([yield* Fiber.join(first), yield* Fiber.join(second)]).toEqual([1, 2])
    }).pipe(Effect.provide(singlePod({ entityMailboxCapacity: 1 }))))

  it.scoped("rejects a new entity with EntityCapacityExceededException when the pod is full", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour())
      const messenger = yield* Sharding.messenger(Counter)
      yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 1 }))
      yield* messenger.send("b")(new Increment({ messageId: freshId(), by: 1 }))
      const error = yield* Effect.flip(messenger.send("c")(new Increment({ messageId: freshId(), by: 1 })))
      expect(error).toBeInstanceOf(ShardingException.EntityCapacityExceededException)
      // Existing entities still work.
      expect(yield* messenger.send("a")(new GetCount({ messageId: freshId() }))).toBe(1)
    }).pipe(Effect.provide(singlePod({ maxEntitiesPerPod: 2 }))))

  it.scoped("processes one sender's messages to one entity in order", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<Array<string>>([])
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromInMemoryQueue((_, dequeue) =>
        Effect.forever(Effect.flatMap(Queue.take(dequeue), (message) =>
          message._tag === "Ping" ? Ref.update(seen, (list) => [...list, message.id]) : Effect.interrupt))
      ))
      const messenger = yield* Sharding.messenger(Pinger)
      const ids = Array.from({ length: 50 }, (_, i) => `o${i}`)
      for (const id of ids) yield* messenger.sendDiscard("p")(new Ping({ id }))
      yield* settle
      expect(yield* Ref.get(seen)).toEqual(ids)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("does a send's work when its effect runs: an effect built and never run takes no mailbox", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      yield* Sharding.registerScoped
      // A synchronous handler (its effect is already an Exit): the fast path.
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) => {
        handled.push(message.id)
        return Effect.succeed(MessageState.Processed(Exit.succeed(`pong ${message.id}`)))
      }))
      const messenger = yield* Sharding.messenger(Pinger)
      const unused = messenger.send("p")(new Ping({ id: "never-run" }))
      expect(handled).toEqual([])
      expect(yield* messenger.send("p")(new Ping({ id: "one" }))).toBe("pong one")
      // The same effect run twice is the same message twice: processed once (deduplicated by primary key).
      const twice = messenger.send("p")(new Ping({ id: "two" }))
      expect([yield* twice, yield* twice]).toEqual(["pong two", "pong two"])
      expect(handled).toEqual(["one", "two"])
      void unused
    }).pipe(Effect.provide(singlePod())))

  it.scoped("gives ExceptionWhileOfferingMessageException for a handler that throws, and keeps the entity", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) => {
        if (message.id.startsWith("throw")) throw new Error("thrown by the handler")
        return Effect.succeed(MessageState.Processed(Exit.succeed("ok")))
      }))
      const messenger = yield* Sharding.messenger(Pinger)
      const error = yield* Effect.flip(messenger.send("p")(new Ping({ id: "throw-1" })))
      expect(error).toBeInstanceOf(ShardingException.ExceptionWhileOfferingMessageException)
      expect((error as ShardingException.ExceptionWhileOfferingMessageException).error).toContain("thrown by the handler")
      expect(yield* messenger.send("p")(new Ping({ id: "fine" }))).toBe("ok")
    }).pipe(Effect.provide(singlePod())))

  it.scoped("answers a retry queued behind its original from the deduplication cache", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const handled = yield* Ref.make(0)
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) =>
        Effect.gen(function*() {
          yield* Deferred.await(gate)
          const n = yield* Ref.updateAndGet(handled, (n) => n + 1)
          return MessageState.Processed(Exit.succeed(`${message.id}#${n}`))
        })
      ))
      const messenger = yield* Sharding.messenger(Pinger)
      const original = yield* Effect.fork(messenger.send("p")(new Ping({ id: "k" })))
      yield* settle
      const retry = yield* Effect.fork(messenger.send("p")(new Ping({ id: "k" })))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      expect([yield* Fiber.join(original), yield* Fiber.join(retry)]).toEqual(["k#1", "k#1"])
      expect(yield* Ref.get(handled)).toBe(1)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("keeps a synchronous handler's message behind one still being processed (one at a time, in order)", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const log: Array<string> = []
      yield* Sharding.registerScoped
      // "slow" waits for the gate; every other message is answered synchronously.
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) => {
        if (message.id === "slow") {
          return Effect.zipRight(
            Effect.sync(() => log.push("slow:start")),
            Effect.as(Deferred.await(gate), MessageState.Processed(Exit.succeed("slow"))).pipe(
              Effect.tap(() => Effect.sync(() => log.push("slow:end")))
            )
          )
        }
        log.push(message.id)
        return Effect.succeed(MessageState.Processed(Exit.succeed(message.id)))
      }))
      const messenger = yield* Sharding.messenger(Pinger)
      const slow = yield* Effect.fork(messenger.send("p")(new Ping({ id: "slow" })))
      yield* settle
      const fast = yield* Effect.fork(messenger.send("p")(new Ping({ id: "fast" })))
      yield* settle
      expect(log).toEqual(["slow:start"])
      yield* Deferred.succeed(gate, undefined)
      expect([yield* Fiber.join(slow), yield* Fiber.join(fast)]).toEqual(["slow", "fast"])
      expect(log).toEqual(["slow:start", "slow:end", "fast"])
    }).pipe(Effect.provide(singlePod())))

  it.scoped("confirms a shard's handoff only after an entity already stopping (passivation) has stopped", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const stopping = yield* Deferred.make<void>()
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(
        counterBehaviour({
          onStop: () => Effect.zipRight(Deferred.succeed(stopping, undefined), Deferred.await(gate))
        }),
        { entityMaxIdleTime: Option.some(Duration.seconds(10)) }
      )
      const sharding = yield* Sharding.Sharding
      yield* sharding.messenger(Counter).send("a")(new Increment({ messageId: freshId(), by: 1 }))
      yield* TestClock.adjust("11 seconds")
      yield* Deferred.await(stopping) // passivation under way, its finalizer blocked
      const handoff = yield* Effect.fork(sharding.unassign(HashSet.make(sharding.getShardId("a"))))
      yield* settle
      expect(handoff.unsafePoll()).toBe(null)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(handoff)
      expect(yield* sharding.localEntityCount).toBe(0)
    }).pipe(Effect.provide(singlePod())))

  it.scoped("stops many idle entities at once (handoff of every shard)", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) =>
        Effect.succeed(MessageState.Processed(Exit.succeed(message.id)))
      ))
      const sharding = yield* Sharding.Sharding
      const messenger = sharding.messenger(Pinger)
      for (let i = 0; i < 2000; i++) yield* messenger.send(`e${i}`)(new Ping({ id: `m${i}` }))
      expect(yield* sharding.localEntityCount).toBe(2000)
      yield* sharding.unassign(yield* sharding.getAssignedShardIds)
      expect(yield* sharding.localEntityCount).toBe(0)
    }).pipe(Effect.provide(singlePod({ maxEntitiesPerPod: 5000 }))))

  it.scoped("runs a handler in its registration's context and gives the sender its own back (also after a defect)", () =>
    Effect.gen(function*() {
      class Greeting extends Context.Tag("test/Greeting")<Greeting, string>() {}
      class Caller extends Context.Tag("test/Caller")<Caller, string>() {}
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Pinger)(RecipientBehaviour.fromFunctionEffect((_, message: Ping) =>
        Effect.gen(function*() {
          if (message.id === "crash") return yield* Effect.die("crashed")
          const greeting = yield* Greeting
          const caller = yield* Effect.serviceOption(Caller)
          return MessageState.Processed(Exit.succeed(`${greeting} (caller visible: ${Option.isSome(caller)})`))
        })
      )).pipe(Effect.provideService(Greeting, "hello"))
      const messenger = yield* Sharding.messenger(Pinger)
      const send = (id: string) =>
        Effect.gen(function*() {
          const reply = yield* Effect.either(messenger.send("p")(new Ping({ id })))
          return { reply, caller: yield* Caller, greeting: Option.isSome(yield* Effect.serviceOption(Greeting)) }
        }).pipe(Effect.provideService(Caller, "me"))
      const ok = yield* send("a")
      expect(ok.reply).toEqual(Either.right("hello (caller visible: false)"))
      expect([ok.caller, ok.greeting]).toEqual(["me", false])
      const crashed = yield* send("crash")
      expect(Either.isLeft(crashed.reply) && crashed.reply.left).toBeInstanceOf(
        ShardingException.ExceptionWhileOfferingMessageException
      )
      expect([crashed.caller, crashed.greeting]).toEqual(["me", false])
    }).pipe(Effect.provide(singlePod())))

  it.effect("starts a singleton, and interrupts it when the pod stops", () =>
    withPod({}, (close) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const interrupted = yield* Deferred.make<void>()
        yield* Sharding.registerScoped
        yield* Sharding.registerSingleton(
          "cron",
          Effect.zipRight(Deferred.succeed(started, undefined), Effect.never).pipe(
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
        )
        yield* Deferred.await(started)
        yield* close
        expect(yield* Deferred.isDone(interrupted)).toBe(true)
      })))

  it.scoped("reports its shards and getShardId", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      const shards = yield* Sharding.getAssignedShardIds
      expect(HashSet.size(shards)).toBe(300)
      expect((yield* Sharding.getShardId("counter-1")).value).toBe(186)
      expect(HashSet.size(yield* Sharding.getPods)).toBe(1)
    }).pipe(Effect.provide(singlePod())))

  it.effect("refuses to start when the lease timing rules are broken", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(singlePod({ leaseRenewalInterval: Duration.seconds(20) }))))
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("InvalidConfigurationException")
    }))

  it.scoped("keeps its shards while the lease is renewed (single-pod mode renews forever)", () =>
    Effect.gen(function*() {
      yield* Sharding.registerScoped
      yield* Sharding.registerEntity(Counter)(counterBehaviour())
      const messenger = yield* Sharding.messenger(Counter)
      yield* TestClock.adjust("5 minutes")
      expect(yield* messenger.send("a")(new Increment({ messageId: freshId(), by: 1 }))).toBe(1)
      expect(MessageState.isProcessed(MessageState.Processed(1))).toBe(true)
    }).pipe(Effect.provide(singlePod())))
})
