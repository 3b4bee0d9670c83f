import { Cause, Effect, Exit, Layer, Scope, Context } from "effect"
import * as NodeCluster from "../src/node/NodeCluster.js"
import * as Storage from "../src/Storage.js"

const tryClose = (name: string, layer: Layer.Layer<any, any, never>, use: (ctx: Context.Context<any>) => Effect.Effect<void> = () => Effect.void) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(layer, scope)
    yield* use(ctx)
    const exit = yield* Effect.exit(Scope.close(scope, Exit.void))
    console.log(name, Exit.isSuccess(exit) ? "ok" : Cause.pretty(exit.cause))
  })

const program = Effect.gen(function*() {
  yield* tryClose("manager", NodeCluster.layerManager({ manager: { apiPort: 0 } }).pipe(Layer.provide(Storage.memory)))
  yield* tryClose("pod", NodeCluster.layerPod({ sharding: { shardingPort: 0, shardManagerUri: "http://127.0.0.1:1" } }))
})
Effect.runPromise(program).then(() => process.exit(0))
