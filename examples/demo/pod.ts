/**
 * A pod process of the demo: the network transport (`NodeCluster.layerPod`), the SQL journal on the demo's
 * SQLite file, and the cluster workflow engine for the ProcessPayment workflow (examples/demo/payment.ts).
 * Configured by the demo through the environment: `POD_NAME`, `SHARD_MANAGER_URI`, `DEMO_JOURNAL` (the
 * SQLite file).
 *
 * Prints `ready <name> <host>:<port>` once registered, then `shards <name> <id>,<id>,...` whenever the set of
 * shards it serves changes, and `dropped <name> <time> <reason>` when it stops serving all its shards at
 * once without being told to (its lease was not renewed in time: on a machine too busy to answer a
 * heartbeat for seconds), with the time in ms since the epoch. Leaves the cluster gracefully on
 * SIGTERM/SIGINT.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import { ClusterWorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer, Logger, Schedule } from "effect"
import { journalPrefix, layerPaymentEffects, processPaymentWorkflow } from "./payment.js"
import { busyRetries, podSharding, shardCheckInterval } from "./settings.js"

const name = process.env.POD_NAME ?? `pod-${process.pid}`

const pod = Layer.scopedDiscard(Effect.gen(function*() {
  const sharding = yield* Sharding.Sharding
  yield* ClusterWorkflowEngine.make(processPaymentWorkflow, { prefix: journalPrefix, shardCheckInterval, identity: name })
  yield* Sharding.registerScoped
  const address = sharding.podAddress
  yield* Console.log(`ready ${name} ${address.host}:${address.port}`)
  let shards = ""
  yield* Effect.forkScoped(Effect.repeat(
    Effect.flatMap(sharding.servedShardEpochs, (served) => {
      const now = Array.from(served.keys()).sort((a, b) => a - b).join(",")
      return now === shards ? Effect.void : Console.log(`shards ${name} ${(shards = now)}`)
    }),
    Schedule.spaced("100 millis")
  ))
})).pipe(
  Layer.provide(layerPaymentEffects(name)),
  Layer.provide(Sqlite.layer({ filename: process.env.DEMO_JOURNAL!, prefix: journalPrefix, busyRetries })),
  Layer.provide(NodeCluster.layerPod({
    sharding: { ...podSharding, shardingPort: 0, shardManagerUri: process.env.SHARD_MANAGER_URI! },
    transport: { host: "127.0.0.1" }
  }))
)

/** Reports the cluster's "dropping N shards: <reason>" warnings as `dropped` lines (the demo reads them). */
const drops = Logger.make(({ date, message }) => {
  const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
  if (text.startsWith("dropping ")) console.log(`dropped ${name} ${date.getTime()} ${text}`)
})

NodeRuntime.runMain(Layer.launch(pod).pipe(Effect.provide(Logger.add(drops))))
