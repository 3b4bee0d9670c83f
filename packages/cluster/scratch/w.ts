import { Cause, Effect, Exit, Layer, Scope, Context } from "effect"
import * as NodeCluster from "../src/node/NodeCluster.js"
import * as Storage from "../src/Storage.js"
import * as Sharding from "../src/Sharding.js"
import * as HttpServer from "@effect/platform/HttpServer"
import { Counter, counterBehaviour, freshId, Increment } from "../test/utils/counter.js"

const program = Effect.gen(function*() {
  const ms = yield* Scope.make()
  const mctx = yield* Layer.buildWithScope(NodeCluster.layerManager({ manager: { apiPort: 0, numberOfShards: 12 } }).pipe(Layer.provide(Storage.memory)), ms)
  const addr = Context.get(mctx, HttpServer.HttpServer).address as any
  const mode = process.argv[2]
  const s1 = yield* Scope.make()
  const c1 = yield* Layer.buildWithScope(NodeCluster.layerPod({ sharding: { numberOfShards: 12, shardingPort: 0, shardManagerUri: `http://127.0.0.1:${addr.port}` } }), s1)
  const owner = Context.get(c1, Sharding.Sharding)
  yield* owner.registerEntity(Counter)(counterBehaviour())
  yield* Scope.extend(owner.registerScoped, s1)
  yield* Effect.sleep("300 millis")
  const parent = yield* Scope.make()
  const s2 = yield* Scope.fork(parent, "sequential")
  const c2 = yield* Layer.buildWithScope(NodeCluster.layerPod({ sharding: { numberOfShards: 12, shardingPort: 0, shardManagerUri: `http://127.0.0.1:${addr.port}` } }), s2)
  const sender = Context.get(c2, Sharding.Sharding)
  if (mode === "register" || mode === "send") yield* Scope.extend(sender.registerScoped, s2)
  if (mode === "send") console.log(yield* sender.messenger(Counter).send("a")(new Increment({ messageId: freshId(), by: 2 })))
  const exit = yield* Effect.exit(Scope.close(s2, Exit.void))
  console.log(mode, "sender", Exit.isSuccess(exit) ? "ok" : Cause.pretty(exit.cause), "me", JSON.stringify((yield* Effect.fiberId).toJSON()))
  const exit1 = yield* Effect.exit(Scope.close(s1, Exit.void))
  console.log(mode, "owner", Exit.isSuccess(exit1) ? "ok" : Cause.pretty(exit1.cause))
})
Effect.runPromise(program).then(() => process.exit(0))
