import { Cause, Effect, Exit, Layer, Scope } from "effect"
import * as server from "../src/node/internal/server.js"
import * as PodsRpc from "../src/node/PodsRpc.js"
import * as Transport from "../src/node/Transport.js"
import * as HttpServer from "@effect/platform/HttpServer"

const tryClose = (name: string, layer: Layer.Layer<any, any, never>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Layer.buildWithScope(layer, scope)
    const exit = yield* Effect.exit(Scope.close(scope, Exit.void))
    console.log(name, Exit.isSuccess(exit) ? "ok" : Cause.pretty(exit.cause))
  })

const program = Effect.gen(function*() {
  yield* tryClose("http", server.layerHttpServer({ host: "127.0.0.1", port: 0 }))
  yield* tryClose("pods", PodsRpc.layer().pipe(Layer.provide(Transport.withDefaults({}))))
  yield* tryClose("http+serveEffect", Layer.scopedDiscard(HttpServer.serveEffect(Effect.succeed(null as any))).pipe(Layer.provide(server.layerHttpServer({ host: "127.0.0.1", port: 0 }))))
})
Effect.runPromise(program).then(() => process.exit(0))
