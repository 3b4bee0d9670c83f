/**
 * A pod process of the example: configured from the environment (`SHARD_MANAGER_URI`, `PORT`, ...; see
 * docs/deployment.md), runs the counter entity, joins the cluster, and leaves it gracefully on
 * SIGTERM/SIGINT. With `DATABASE_URL` (the manager's database: a SQLite file or PostgreSQL) and
 * `CLUSTER_TABLE_PREFIX` (the manager's prefix), it renews its shards' leases in the database itself
 * (`StorageSql.layerPodLeases`), so it keeps serving while the manager is down.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer } from "effect"
import { Counter, counterBehaviour } from "./counter.js"

const name = process.env.POD_NAME ?? `pod-${process.pid}`
const databaseUrl = process.env.DATABASE_URL

// The pod's leases in the database: the manager's tables, on the manager's database.
const podLeases = databaseUrl === undefined || databaseUrl === ""
  ? NodeCluster.layerPodFromConfig
  : NodeCluster.layerPodFromConfig.pipe(
    Layer.provide(StorageSql.layerPodLeases({ prefix: process.env.CLUSTER_TABLE_PREFIX ?? StorageSql.defaultPrefix })),
    Layer.provide(StorageSql.layerClient(databaseUrl))
  )

const pod = Layer.scopedDiscard(Effect.gen(function*() {
  yield* Sharding.registerEntity(Counter)(counterBehaviour(name))
  yield* Sharding.registerScoped
  const address = (yield* HttpServer.HttpServer).address
  yield* Console.log(
    `${name} joined, serving on port ${address._tag === "TcpAddress" ? address.port : "?"}${
      databaseUrl === undefined || databaseUrl === "" ? "" : ", renewing its leases in the database"
    }`
  )
})).pipe(Layer.provide(podLeases))

NodeRuntime.runMain(Layer.launch(pod))
