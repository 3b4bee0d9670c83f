/**
 * The cluster quick start of docs/cluster.md: one entity type, two pods in one process, a send, a broadcast
 * and a singleton. The code between the `quick start` markers is the page's code block (a test checks
 * they are the same).
 *
 *   pnpm exec tsx --conditions=source examples/cluster-quickstart.ts
 */
// --- quick start
import {
  InProcessTransport,
  Message,
  MessageState,
  RecipientBehaviour,
  RecipientType,
  Sharding
} from "@effect-cluster/cluster"
import { Console, Deferred, Effect, Exit, HashMap, Ref, Schema } from "effect"

// An entity type: its messages say what they answer and carry a primary key (retries are deduplicated).
class Increment extends Message.TaggedMessage<Increment>()(
  "Increment",
  Schema.Never, // failure
  Schema.Number, // success: the new count
  { id: Schema.String },
  (message) => message.id
) {}
const Counter = RecipientType.makeEntityType("Counter", Increment)

// A topic: a broadcast reaches its instance on every pod.
class WhoAreYou extends Message.TaggedMessage<WhoAreYou>()("WhoAreYou", Schema.Never, Schema.String, {
  id: Schema.String
}, (message) => message.id) {}
const Pods = RecipientType.makeTopicType("Pods", WhoAreYou)

// What every pod runs: the counter, the topic, and a singleton (on one pod of the cluster at a time).
const setup = (name: string, singletonStarted: Deferred.Deferred<string>) =>
  Effect.gen(function*() {
    yield* Sharding.registerEntity(Counter)(
      RecipientBehaviour.fromFunctionEffectStateful(
        () => Effect.succeed(0),
        (_entityId, _message, count) =>
          Effect.map(Ref.updateAndGet(count, (n) => n + 1), (n) => MessageState.Processed(Exit.succeed(n)))
      )
    )
    yield* Sharding.registerTopic(Pods)(
      RecipientBehaviour.fromFunctionEffect(() => Effect.succeed(MessageState.Processed(Exit.succeed(name))))
    )
    yield* Sharding.registerSingleton("nightly-report", Deferred.succeed(singletonStarted, name))
  })

const program = Effect.gen(function*() {
  const singletonStarted = yield* Deferred.make<string>()
  const pod1 = yield* InProcessTransport.makePod({ shardingPort: 1 }, setup("pod-1", singletonStarted))
  const pod2 = yield* InProcessTransport.makePod({ shardingPort: 2 }, setup("pod-2", singletonStarted))

  // A send works from any pod, wherever the entity lives.
  const counter = pod1.messenger(Counter)
  yield* counter.send("counter-a")(new Increment({ id: "request-1" }))
  const count = yield* pod2.messenger(Counter).send("counter-a")(new Increment({ id: "request-2" }))
  yield* Console.log(`counter-a: ${count}`)
  // The same message again (a retry): answered from the stored reply, not processed twice.
  yield* Console.log(`counter-a, request-2 again: ${yield* counter.send("counter-a")(new Increment({ id: "request-2" }))}`)

  // A broadcast: one reply per pod.
  const replies = yield* pod2.broadcaster(Pods).broadcast("all")(new WhoAreYou({ id: "hello" }))
  const names = Array.from(HashMap.values(replies), (reply) => reply._tag === "Right" ? reply.right : "error")
  yield* Console.log(`broadcast answered by: ${names.sort().join(", ")}`)

  yield* Console.log(`singleton started on: ${yield* Deferred.await(singletonStarted)}`)
})

// The transport and a shard manager (state in memory) for the pods above; the end of the scope stops them.
Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(InProcessTransport.layerCluster())))
// --- end of quick start
