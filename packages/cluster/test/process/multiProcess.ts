/**
 * A cluster of real processes for the multi-process tests: the `effect-cluster manager` bin on PostgreSQL
 * (a unique table prefix), pod children (podChild.ts), and a client pod in the test process itself (not
 * registered: it only sends). Everything is removed when the scope closes.
 */
import { ShardingException, Sharding } from "@effect-cluster/cluster"
import { NodeCluster } from "@effect-cluster/cluster/node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Duration, Effect, Either, Layer, Ref } from "effect"
import type * as Scope from "effect/Scope"
import { Counter, Increment } from "../utils/counter.js"
import { closedPort, eventuallyLive } from "../utils/network.js"
import { databaseUrl, uniqueTable } from "../utils/sql.js"
import { type Child, spawnChild } from "./harness.js"
import {
  createFencedTable,
  createObserverTable,
  numberOfShards,
  type PodChildConfig,
  readEvents,
  record,
  shardingConfig,
  type Timing,
  timing as defaultTiming
} from "./cluster.js"

/** A pod child, once it printed its port and incarnation. */
export interface PodProcess {
  readonly child: Child
  readonly port: number
  readonly incarnation: string
}

export interface TestCluster {
  readonly prefix: string
  readonly observerTable: string
  /** The first manager's port. */
  readonly managerPort: number
  /** A second port, for a standby manager. */
  readonly standbyPort: number
  /** Both managers' URIs, comma-separated: what the pods and the client are given. */
  readonly managerUri: string
  readonly client: Sharding.Sharding
  readonly managers: Ref.Ref<ReadonlyArray<Child>>
  /** Starts a manager process on `port` (default: `managerPort`). */
  readonly startManager: (name: string, port?: number) => Effect.Effect<Child, never, Scope.Scope>
  /** Starts pods; `beforeRegister` runs once they all listen, before any registers. */
  readonly startPods: (
    names: ReadonlyArray<string>,
    beforeRegister?: Effect.Effect<void, never, Scope.Scope>
  ) => Effect.Effect<ReadonlyArray<PodProcess>, never, Scope.Scope>
  /** shard owners as the manager persisted them: port -> shard count */
  readonly owners: Effect.Effect<ReadonlyMap<number, number>>
  /** The persisted assignment, shard -> port (0: none). */
  readonly assignment: Effect.Effect<ReadonlyMap<number, number>>
  /** Waits until the given pods hold every shard between them, evenly. */
  readonly balancedOn: (pods: ReadonlyArray<PodProcess>, timeoutMillis?: number) => Effect.Effect<void>
  /** Records that an incarnation was killed or frozen (a parent-side observer row). */
  readonly mark: (pod: PodProcess, event: "killed" | "frozen" | "resumed") => Effect.Effect<void>
  readonly events: Effect.Effect<ReadonlyArray<import("./cluster.js").ObserverRow>>
  /** The incarnation that last started `entityId`. */
  readonly ownerOf: (entityId: string) => Effect.Effect<string | undefined>
  /** Asks a pod for a fenced write under its first instance of `entityId`; its epoch and outcome. */
  readonly fencedWrite: (pod: PodProcess, entityId: string) => Effect.Effect<{ epoch: number; outcome: string }>
  /** The rows the fenced writes committed. */
  readonly fencedRows: Effect.Effect<ReadonlyArray<{ entity_id: string; incarnation: string; epoch: number }>>
}

const managerEnv = {
  REBALANCE_RATE: "0.2",
  REBALANCE_INTERVAL: "2000",
  REBALANCE_RETRY_INTERVAL: "1000",
  PING_TIMEOUT: "1000"
}

/** The manager bin's arguments for a cluster. */
export const managerArgs = (port: number, prefix: string, timing: Timing = defaultTiming): Array<string> => [
  "manager",
  "--port",
  String(port),
  "--database-url",
  databaseUrl,
  "--table-prefix",
  prefix,
  "--number-of-shards",
  String(numberOfShards),
  "--lease-duration",
  String(timing.leaseDuration),
  "--lease-margin",
  String(timing.leaseMargin)
]

/** Starts a manager process and the client (default timing); pods are started by the test. */
export const makeCluster: Effect.Effect<TestCluster, never, Scope.Scope | SqlClient.SqlClient> = Effect.suspend(() =>
  makeClusterWith(defaultTiming)
)

/** Starts a manager process and the client with the given lease timing; pods are started by the test. */
export const makeClusterWith = (
  timing: Timing
): Effect.Effect<TestCluster, never, Scope.Scope | SqlClient.SqlClient> => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const prefix = uniqueTable("mp")
  const observerTable = `${prefix}_observer`
  const fencedTable = `${prefix}_fenced`
  yield* Effect.orDie(createObserverTable(observerTable))
  yield* Effect.orDie(createFencedTable(fencedTable))
  yield* Effect.addFinalizer(() =>
    Effect.forEach(
      ["observer", "fenced", "pods", "shards", "manager_lease", "migrations"],
      (table) => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(`${prefix}_${table}`)}`)
    )
  )
  const managerPort = yield* closedPort
  let standbyPort = yield* closedPort
  while (standbyPort === managerPort) standbyPort = yield* closedPort
  const managerUri = `http://127.0.0.1:${managerPort},http://127.0.0.1:${standbyPort}`
  const managers = yield* Ref.make<ReadonlyArray<Child>>([])
  const startManager = (name: string, port = managerPort) =>
    Effect.tap(
      spawnChild(name, "src/node/bin.ts", managerArgs(port, prefix, timing), managerEnv),
      (child) => Ref.update(managers, (all) => [...all, child])
    )
  const first = yield* startManager("manager-1")
  yield* first.waitFor(/listening on/)

  const startPods = (names: ReadonlyArray<string>, beforeRegister: Effect.Effect<void, never, Scope.Scope> = Effect.void) =>
    Effect.gen(function*() {
      const children = yield* Effect.forEach(names, (name) =>
        spawnChild(name, "test/process/podChild.ts", [], {
          CLUSTER_POD_CHILD: JSON.stringify(
            { name, managerUri, observerTable, tablePrefix: prefix, fencedTable, timing } satisfies PodChildConfig
          ),
          DATABASE_URL: databaseUrl
        }))
      const pods = yield* Effect.forEach(children, (child) =>
        Effect.map(child.waitFor(/^listening (.*)$/), (match) => {
          const info = JSON.parse(match[1]!) as { port: number; incarnation: string }
          return { child, port: info.port, incarnation: info.incarnation }
        }), { concurrency: "unbounded" })
      // The gate: all listen before any registers, so they join in one balancing round.
      yield* beforeRegister
      yield* Effect.forEach(pods, (pod) => pod.child.send("register"))
      yield* Effect.forEach(pods, (pod) => pod.child.waitFor(/^registered /), { concurrency: "unbounded" })
      return pods
    })

  const client = Context.get(
    yield* Layer.build(NodeCluster.layerPod({ sharding: shardingConfig(managerUri, timing) })),
    Sharding.Sharding
  )

  const assignment = Effect.orDie(Effect.map(
    sql<{ shard_id: number; pod_port: number | null }>`SELECT shard_id, pod_port FROM ${sql(`${prefix}_shards`)}`,
    (rows) => new Map(rows.map((row) => [Number(row.shard_id), row.pod_port === null ? 0 : Number(row.pod_port)]))
  ))
  const owners = Effect.map(assignment, (map) => {
    const counts = new Map<number, number>()
    for (const port of map.values()) if (port !== 0) counts.set(port, (counts.get(port) ?? 0) + 1)
    return counts
  })
  const balancedOn = (pods: ReadonlyArray<PodProcess>, timeoutMillis = 30_000) =>
    eventuallyLive(
      Effect.map(owners, (counts) => {
        const held = pods.map((pod) => counts.get(pod.port) ?? 0)
        return held.reduce((a, b) => a + b, 0) === numberOfShards && Math.max(...held) - Math.min(...held) <= 1
      }),
      timeoutMillis
    )
  const events = Effect.orDie(Effect.provideService(readEvents(observerTable), SqlClient.SqlClient, sql))
  const fencedWrite = (pod: PodProcess, entityId: string) =>
    Effect.zipRight(
      pod.child.send(`fenced ${entityId}`),
      Effect.map(
        pod.child.waitFor(new RegExp(`^fenced ${entityId} (\\d+) (.*)$`), 30_000),
        (match) => ({ epoch: Number(match[1]), outcome: match[2]! })
      )
    )
  const fencedRows = Effect.orDie(Effect.map(
    sql<{ entity_id: string; incarnation: string; epoch: unknown }>`SELECT entity_id, incarnation, epoch FROM ${
      sql(fencedTable)
    }`,
    (rows) => rows.map((row) => ({ ...row, epoch: Number(row.epoch) }))
  ))
  return {
    prefix,
    observerTable,
    managerPort,
    standbyPort,
    managerUri,
    fencedWrite,
    fencedRows,
    client,
    managers,
    startManager,
    startPods,
    owners,
    assignment,
    balancedOn,
    mark: (pod, event) =>
      Effect.orDie(Effect.provideService(
        record(observerTable, { entity_id: "*", incarnation: pod.incarnation, event, message_id: null, at: Date.now() }),
        SqlClient.SqlClient,
        sql
      )),
    events,
    ownerOf: (entityId) =>
      Effect.map(events, (rows) => rows.filter((row) => row.entity_id === entityId && row.event === "start").at(-1)?.incarnation)
  }
})

/** The outcome of one send of the steady traffic. */
export type SendOutcome =
  | { readonly _tag: "Ok"; readonly entityId: string; readonly messageId: string }
  | { readonly _tag: "Typed"; readonly entityId: string; readonly messageId: string; readonly error: string }
  | { readonly _tag: "Untyped"; readonly entityId: string; readonly messageId: string; readonly error: string }

let messages = 0

/** One send from the client, bounded: its outcome is a reply, a typed `ShardingException`, or "untyped". */
export const sendOnce = (client: Sharding.Sharding, entityId: string): Effect.Effect<SendOutcome> => {
  const messageId = `msg-${process.pid}-${messages++}`
  return client.messenger(Counter).send(entityId)(new Increment({ messageId, by: 1 })).pipe(
    Effect.timeoutFail({ duration: Duration.seconds(40), onTimeout: () => new Error("send did not return in 40 s") }),
    Effect.either,
    Effect.map((result): SendOutcome =>
      Either.isRight(result)
        ? { _tag: "Ok", entityId, messageId }
        : ShardingException.isShardingException(result.left)
        ? { _tag: "Typed", entityId, messageId, error: String(result.left) }
        : { _tag: "Untyped", entityId, messageId, error: String(result.left) }
    ),
    Effect.catchAllDefect((defect) => Effect.succeed({ _tag: "Untyped", entityId, messageId, error: String(defect) } as const))
  )
}

/**
 * Steady traffic until `stop` is completed: one sender per entity, each sending its next message once the
 * previous returned. Returns every outcome.
 */
export const traffic = (
  client: Sharding.Sharding,
  entityIds: ReadonlyArray<string>,
  running: Ref.Ref<boolean>
): Effect.Effect<ReadonlyArray<SendOutcome>> =>
  Effect.map(
    Effect.forEach(entityIds, (entityId) =>
      Effect.gen(function*() {
        const outcomes: Array<SendOutcome> = []
        while (yield* Ref.get(running)) {
          outcomes.push(yield* sendOnce(client, entityId))
          // Paced (about 20 sends/s per entity): steady load, not a flood of a loaded machine.
          yield* Effect.sleep("50 millis")
        }
        return outcomes
      }), { concurrency: "unbounded" }),
    (all) => all.flat()
  )
