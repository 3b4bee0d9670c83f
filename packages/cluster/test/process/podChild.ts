/**
 * A pod process for the multi-process tests: serves on 127.0.0.1 (a free port), runs the counter entity
 * whose instances record their start, stop and messages in the observer table (PostgreSQL at
 * DATABASE_URL), renews its shards' leases in the cluster's tables, prints `listening <json>`, waits at its gate (a `register` line on stdin), registers
 * and prints `registered`. SIGTERM/SIGINT (NodeRuntime.runMain) unregisters gracefully.
 */
import { Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Console, Context, Effect, Layer, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { createInterface } from "node:readline"
import { Counter, counterBehaviour } from "../utils/counter.js"
import { type PodChildConfig, record, shardingConfig } from "./cluster.js"

const config: PodChildConfig = JSON.parse(process.env.CLUSTER_POD_CHILD ?? "{}")
const incarnation = `${config.name}:${process.pid}:${randomUUID().slice(0, 8)}`
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"

const gate = Effect.async<void>((resume) => {
  const lines = createInterface({ input: process.stdin })
  lines.on("line", (line) => {
    if (line.trim() === "register") {
      lines.close()
      resume(Effect.void)
    }
  })
})

const program = Effect.gen(function*() {
  // The pod renews its leases in the database too: it keeps its shards while the manager is down.
  const pod = yield* Layer.build(
    NodeCluster.layerPod({ sharding: shardingConfig(config.managerUri, config.timing) }).pipe(
      Layer.provide(StorageSql.layerPodLeases({ prefix: config.tablePrefix }))
    )
  )
  const sharding = Context.get(pod, Sharding.Sharding)
  const address = Context.get(pod, HttpServer.HttpServer).address
  const sql = yield* SqlClient.SqlClient
  const observe = (entityId: string, event: "start" | "stop" | "msg", messageId: string | null = null) =>
    record(config.observerTable, { entity_id: entityId, incarnation, event, message_id: messageId, at: Date.now() }).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.orDie
    )
  yield* Effect.provideService(
    Sharding.registerEntity(Counter)(counterBehaviour({
      onStart: (entityId) => observe(entityId, "start"),
      onStop: (entityId) => observe(entityId, "stop"),
      onMessage: (entityId, message) => observe(entityId, "msg", message.messageId)
    })),
    Sharding.Sharding,
    sharding
  )
  const port = address._tag === "TcpAddress" ? address.port : 0
  yield* Console.log(`listening ${JSON.stringify({ port, incarnation })}`)
  yield* gate
  yield* sharding.registerScoped
  yield* Console.log(`registered ${JSON.stringify({ port, incarnation })}`)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: 4 }))
)

NodeRuntime.runMain(program)
