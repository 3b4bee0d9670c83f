/// <reference types="node" />
/**
 * The `effect-cluster` command line (the package's `bin`), built with `@effect/cli`:
 * `effect-cluster manager --port 8080 --database-url postgres://...` runs a shard manager process on
 * `StorageSql` (PostgreSQL, or a SQLite file on one machine). Several such processes on one database are
 * one active manager and standbys (`ManagerLease`, `NodeCluster.layerManagerStandby`): each binds its own
 * port at once, a standby answers every call with `ManagerNotActive` (and `/health` with 503) until it
 * holds the manager lease, and a manager that loses the lease exits (status 1) so that its supervisor
 * restarts it as a standby. Pods list every manager in `SHARD_MANAGER_URI` (comma-separated). Every
 * option falls back to an environment variable, named in `--help`.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import * as ManagerConfig from "../ManagerConfig.js"
import * as ManagerLease from "../ManagerLease.js"
import { Storage } from "../Storage.js"
import * as SqlClientUrl from "./internal/sqlClient.js"
import * as StorageSql from "./StorageSql.js"
import * as NodeCluster from "./NodeCluster.js"
import * as Transport from "./Transport.js"

/**
 * The version `--version` prints (the package's version; a test keeps them equal).
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

/**
 * The command line could not start a manager: the database URL names no supported database, its driver
 * is not installed, or the storage could not be opened. Also: the manager lost its lease to another.
 *
 * @since 0.1.0
 * @category errors
 */
export class CliError extends Schema.TaggedError<CliError>()("@effect-cluster/cluster/node/CliError", {
  reason: Schema.String
}) {}

/**
 * Where the manager keeps its state, read from a database URL: PostgreSQL for `postgres://` and
 * `postgresql://`, a SQLite file for `file:` URLs and plain paths.
 *
 * @since 0.1.0
 * @category models
 */
export type Database =
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string> }
  | { readonly _tag: "Sqlite"; readonly url: string }

/**
 * Reads a database URL (see `Database`).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseDatabaseUrl = (url: string): Either.Either<Database, string> => {
  const parsed = SqlClientUrl.parseDatabaseUrl(url)
  return "error" in parsed ? Either.left(parsed.error) : Either.right(parsed.database)
}

/**
 * What the `manager` command runs with: the options, each already resolved from the command line, its
 * environment variable or its default. The rest of `ManagerConfig` and `Transport.TransportConfig` is read
 * from the environment (`ManagerConfig.config`, `Transport.config`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagerCommandOptions {
  readonly host: string
  readonly port: number
  readonly databaseUrl: Redacted.Redacted<string>
  readonly tablePrefix: string
  readonly numberOfShards: number
  readonly leaseDuration: Duration.Duration
  readonly leaseMargin: Duration.Duration
  readonly holder: Option.Option<string>
}

/**
 * Runs a shard manager until interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`): opens the storage,
 * binds `host:port` and answers as a standby (`ManagerNotActive`, `/health` 503) until it holds the manager
 * lease, then serves as the active manager and prints one line,
 * `effect-cluster manager listening on http://<host>:<port> (term <n>)`. Fails with
 * `CliError` when it loses the lease (another manager took over while this one was paused or cut off).
 *
 * @since 0.1.0
 * @category running
 */
export const runManager = (options: ManagerCommandOptions): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const fromEnv = yield* ManagerConfig.config
    const transport = { ...(yield* Transport.config), host: options.host }
    const manager: ManagerConfig.ManagerConfig = {
      ...fromEnv,
      apiPort: options.port,
      numberOfShards: options.numberOfShards,
      leaseDuration: options.leaseDuration,
      leaseMargin: options.leaseMargin
    }
    yield* ManagerConfig.validate(manager)
    const clientLayer = yield* SqlClientUrl.layerFromUrl(Redacted.value(options.databaseUrl)).pipe(
      Effect.mapError((error) => new CliError({ reason: error.reason }))
    )
    const sql = yield* Layer.build(clientLayer)
    const storage = yield* StorageSql.make({ prefix: options.tablePrefix }).pipe(Effect.provide(sql))
    const holder = Option.getOrElse(options.holder, () => `${hostname()}:${options.port}/${randomUUID()}`)
    yield* Console.log(
      `effect-cluster manager ${holder}: standby on ${options.host}:${
        options.port === 0 ? "a free port" : options.port
      } (answers ManagerNotActive), waiting for the manager lease`
    )
    // Built once this process holds the manager lease; its server answers from the start.
    const served = yield* Layer.build(
      NodeCluster.layerManagerStandby({ manager, transport, holder }).pipe(
        Layer.provide(Layer.succeed(Storage, storage))
      )
    )
    const held: ManagerLease.HeldManagerLease = Context.get(served, ManagerLease.Tenure)
    const address = Context.get(served, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : options.port
    yield* Console.log(`effect-cluster manager listening on http://${options.host}:${port} (term ${held.term})`)
    yield* held.lost
    return yield* new CliError({ reason: `manager ${holder} lost the manager lease (term ${held.term}); exiting` })
  }).pipe(Effect.scoped)

const withEnv = <A>(option: Options.Options<A>, config: Config.Config<A>, description: string) =>
  option.pipe(Options.withFallbackConfig(config), Options.withDescription(description))

const millisOption = (name: string, env: string, fallback: Duration.Duration, what: string) =>
  withEnv(
    Options.integer(name).pipe(Options.map(Duration.millis)),
    Config.integer(env).pipe(Config.map(Duration.millis), Config.withDefault(fallback)),
    `${what}, in milliseconds (env ${env}; default ${Duration.toMillis(fallback)})`
  )

const managerOptions = {
  host: withEnv(
    Options.text("host"),
    Config.string("CLUSTER_HOST").pipe(Config.withDefault(Transport.defaultValues.host)),
    `interface to bind (env CLUSTER_HOST; default ${Transport.defaultValues.host}: this machine only; 0.0.0.0 for all)`
  ),
  port: withEnv(
    Options.integer("port"),
    Config.integer("API_PORT").pipe(Config.withDefault(ManagerConfig.defaultValues.apiPort)),
    `port of /rpc and /health (env API_PORT; default ${ManagerConfig.defaultValues.apiPort}; 0 picks a free port)`
  ),
  databaseUrl: withEnv(
    Options.redacted("database-url"),
    Config.redacted("DATABASE_URL"),
    "where the manager keeps pods, assignments, epochs and leases: postgres://user@host:5432/db, or a SQLite file " +
      "(a path or file: URL, one machine only) (env DATABASE_URL; required)"
  ),
  tablePrefix: withEnv(
    Options.text("table-prefix"),
    Config.string("CLUSTER_TABLE_PREFIX").pipe(Config.withDefault(StorageSql.defaultPrefix)),
    `prefix of the table names, created if absent (env CLUSTER_TABLE_PREFIX; default ${StorageSql.defaultPrefix})`
  ),
  numberOfShards: withEnv(
    Options.integer("number-of-shards"),
    Config.integer("NUMBER_OF_SHARDS").pipe(Config.withDefault(ManagerConfig.defaultValues.numberOfShards)),
    `must equal every pod's (env NUMBER_OF_SHARDS; default ${ManagerConfig.defaultValues.numberOfShards})`
  ),
  leaseDuration: millisOption(
    "lease-duration",
    "LEASE_DURATION",
    ManagerConfig.defaultValues.leaseDuration,
    "the lease granted to pods per heartbeat, and the manager lease"
  ),
  leaseMargin: millisOption(
    "lease-margin",
    "LEASE_MARGIN",
    ManagerConfig.defaultValues.leaseMargin,
    "slack after a lease before its shards (or the manager lease) move"
  ),
  holder: withEnv(
    Options.text("holder").pipe(Options.optional),
    Config.option(Config.string("CLUSTER_MANAGER_ID")),
    "this process's name in the manager lease row (env CLUSTER_MANAGER_ID; default <hostname>:<port>/<random uuid>)"
  )
}

const environmentOnly = [
  "Read from the environment only:",
  "CLUSTER_SECRET (shared secret authenticating every call; never put it on a command line),",
  "CLUSTER_TLS, CLUSTER_SEND_TIMEOUT, CLUSTER_CALL_TIMEOUT, CLUSTER_UNASSIGN_TIMEOUT, CLUSTER_MAX_MESSAGE_BYTES,",
  "CLUSTER_IDLE_CONNECTION_TIMEOUT (transport), REBALANCE_INTERVAL, REBALANCE_FOLLOW_UP_INTERVAL,",
  "REBALANCE_RETRY_INTERVAL, REBALANCE_RATE, PING_TIMEOUT, PERSIST_RETRY_INTERVAL, PERSIST_RETRY_COUNT",
  "(manager; durations in milliseconds). See docs/deployment.md."
].join(" ")

/**
 * `effect-cluster manager`: a shard manager process (see `runManager`).
 *
 * @since 0.1.0
 * @category commands
 */
export const managerCommand = Command.make("manager", managerOptions, runManager).pipe(
  Command.withDescription(
    "Run a shard manager on PostgreSQL or a SQLite file. Several managers on one database: one is active, " +
      "the others are standbys that take over once its lease has ended. Each binds its own port at once; a " +
      "standby answers ManagerNotActive (and /health 503). Pods list every manager, comma-separated, in " +
      "SHARD_MANAGER_URI (e.g. http://m1:8080,http://m2:8080) and use the one that answers. " + environmentOnly
  )
)

/**
 * `effect-cluster`: the root command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("effect-cluster").pipe(
  Command.withDescription("Processes of an effect-cluster deployment (docs/deployment.md)."),
  Command.withSubcommands([managerCommand])
)

/**
 * Parses `argv` (as `process.argv`: the first two entries are node and the script) and runs the command.
 *
 * @since 0.1.0
 * @category running
 */
export const run = Command.run(command, { name: "effect-cluster", version })
