/**
 * A pod process of bench/clusterWorkflows.ts: the network transport, the cluster workflow engine for the
 * benchmark's workflow, and the journal named by `BENCH_JOURNAL` (JSON `JournalSpec`). Prints `ready` once
 * registered; leaves the cluster on SIGTERM.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import { ClusterWorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer } from "effect"
import { benchWorkflow, journalLayer, type JournalSpec } from "./clusterWorkflowsShared.js"

const spec = JSON.parse(process.env.BENCH_JOURNAL!) as JournalSpec

const pod = Layer.scopedDiscard(Effect.gen(function*() {
  yield* ClusterWorkflowEngine.make(benchWorkflow, { prefix: spec.prefix })
  yield* Sharding.registerScoped
  yield* Console.log("ready")
})).pipe(
  Layer.provide(journalLayer(spec)),
  Layer.provide(NodeCluster.layerPod({
    sharding: { shardingPort: 0, shardManagerUri: process.env.SHARD_MANAGER_URI!, numberOfShards: 30 },
    transport: { host: "127.0.0.1" }
  }))
)

NodeRuntime.runMain(Layer.launch(pod))
