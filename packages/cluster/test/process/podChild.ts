/**
 * A pod process for the multi-process tests: serves on 127.0.0.1 (a free port), runs the counter entity
 * whose instances record their start, stop and messages in the observer table (PostgreSQL at
 * DATABASE_URL), renews its shards' leases in the cluster's tables, prints `listening <json>`, waits at its gate (a `register` line on stdin), registers
 * and prints `registered`. SIGTERM/SIGINT (NodeRuntime.runMain) unregisters gracefully.
 *
 * A `fenced <entityId>` line makes a fenced write (FencedWrite) under the epoch of the first instance of
 * that entity this process started (kept after the instance stopped, as a handler of a paused process
 * would hold it), and prints `fenced <entityId> <epoch> committed` or `... stale`.
 */
import { RecipientBehaviourContext, Sharding } from "@effect-cluster/cluster"
import * as FencedWrite from "@effect-cluster/cluster/FencedWrite"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as StorageSql from "@effect-cluster/cluster/StorageSql"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Console, Context, Effect, Layer, Queue, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import { createInterface } from "node:readline"
import { Counter, counterBehaviour } from "../utils/counter.js"
import { type PodChildConfig, record, shardingConfig } from "./cluster.js"

const config: PodChildConfig = JSON.parse(process.env.CLUSTER_POD_CHILD ?? "{}")
const incarnation = `${config.name}:${process.pid}:${randomUUID().slice(0, 8)}`
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"

// Command lines from the parent, in order.
const commands = Effect.runSync(Queue.unbounded<string>())
createInterface({ input: process.stdin }).on("line", (line) => Queue.unsafeOffer(commands, line.trim()))

const gate = Effect.iterate("", { while: (line) => line !== "register", body: () => Queue.take(commands) })

// The context of the first instance of each entity this process started.
const contexts = new Map<string, RecipientBehaviourContext.RecipientBehaviourContext>()

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
  const fence = yield* FencedWrite.make({ prefix: config.tablePrefix })
  const fencedWrite = (entityId: string) =>
    Effect.gen(function*() {
      const context = contexts.get(entityId)
      if (context === undefined) return yield* Console.log(`fenced ${entityId} 0 unknown`)
      const insert = sql`INSERT INTO ${sql(config.fencedTable)} (entity_id, incarnation, epoch)
        VALUES (${entityId}, ${incarnation}, ${context.epoch ?? 0})`
      const outcome = yield* fence.write(insert).pipe(
        Effect.provideService(RecipientBehaviourContext.RecipientBehaviourContext, context),
        Effect.as("committed"),
        Effect.catchTag("@effect-cluster/cluster/StaleEpochError", () => Effect.succeed("stale")),
        Effect.catchAll((error) => Effect.succeed(`failed ${String(error)}`))
      )
      yield* Console.log(`fenced ${entityId} ${context.epoch} ${outcome}`)
    })
  const remember = (entityId: string) =>
    Effect.map(RecipientBehaviourContext.RecipientBehaviourContext, (context) => {
      if (!contexts.has(entityId)) contexts.set(entityId, context)
    }) as Effect.Effect<void>
  yield* Effect.provideService(
    Sharding.registerEntity(Counter)(counterBehaviour({
      onStart: (entityId) => Effect.zipRight(remember(entityId), observe(entityId, "start")),
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
  return yield* Effect.forever(Effect.flatMap(Queue.take(commands), (line) => {
    const fenced = /^fenced (\S+)$/.exec(line)
    return fenced === null ? Effect.void : fencedWrite(fenced[1]!)
  }))
}).pipe(
  Effect.scoped,
  Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: 4 }))
)

NodeRuntime.runMain(program)
