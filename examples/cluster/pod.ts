/**
 * A pod process of the example: configured from the environment (`SHARD_MANAGER_URI`, `PORT`, ...; see
 * docs/deployment.md), runs the counter entity, joins the cluster, and leaves it gracefully on
 * SIGTERM/SIGINT.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer } from "effect"
import { Counter, counterBehaviour } from "./counter.js"

const name = process.env.POD_NAME ?? `pod-${process.pid}`

const pod = Layer.scopedDiscard(Effect.gen(function*() {
  yield* Sharding.registerEntity(Counter)(counterBehaviour(name))
  yield* Sharding.registerScoped
  const address = (yield* HttpServer.HttpServer).address
  yield* Console.log(`${name} joined, serving on port ${address._tag === "TcpAddress" ? address.port : "?"}`)
})).pipe(Layer.provide(NodeCluster.layerPodFromConfig))

NodeRuntime.runMain(Layer.launch(pod))
