import { Cause, Effect, Exit, Layer, Scope, Context } from "effect"
import * as NodeCluster from "../src/node/NodeCluster.js"
import * as Storage from "../src/Storage.js"
import * as Sharding from "../src/Sharding.js"
import * as HttpServer from "@effect/platform/HttpServer"

const program = Effect.gen(function*() {
  const ms = yield* Scope.make()
  const mctx = yield* Layer.buildWithScope(NodeCluster.layerManager({ manager: { apiPort: 0 } }).pipe(Layer.provide(Storage.memory)), ms)
  const addr = Context.get(mctx, HttpServer.HttpServer).address as any
  const mode = process.argv[2]
  const scope = yield* Scope.make()
  const ctx = yield* Layer.buildWithScope(NodeCluster.layerPod({ sharding: { shardingPort: 0, shardManagerUri: `http://127.0.0.1:${addr.port}` } }), scope)
  const sharding = Context.get(ctx, Sharding.Sharding)
  if (mode === "register") yield* sharding.register
  if (mode === "registerUnregister") { yield* sharding.register; yield* sharding.unregister }
  if (mode === "assignments") console.log((yield* Effect.exit(sharding.refreshAssignments)))
  const exit = yield* Effect.exit(Scope.close(scope, Exit.void))
  console.log(mode, Exit.isSuccess(exit) ? "ok" : Cause.pretty(exit.cause))
  const exit2 = yield* Effect.exit(Scope.close(ms, Exit.void))
  console.log("manager", Exit.isSuccess(exit2) ? "ok" : Cause.pretty(exit2.cause))
})
Effect.runPromise(program).then(() => process.exit(0))
