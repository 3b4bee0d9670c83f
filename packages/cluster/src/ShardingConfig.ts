/**
 * The configuration of a pod (`Sharding`), with documented defaults.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { InvalidConfigurationException } from "./ShardingException.js"

/**
 * A pod's configuration. Defaults in brackets.
 *
 * - `numberOfShards` [300]: must equal the manager's.
 * - `selfHost` ["localhost"], `shardingPort` [54321]: this pod's address. With the network transport
 *   (`@effect-cluster/cluster/node`) the port it binds and the host others reach it at; with
 *   `InProcessTransport` only its name inside the process.
 * - `shardManagerUri` ["http://localhost:8080/api/rest"]: where the network transport finds the manager;
 *   several URIs separated by commas for an active manager and its standbys (the pod uses the one that
 *   answers as active); unused in-process.
 * - `serverVersion` ["1.0.0"]: during a rolling upgrade shards go only to the highest version.
 * - `entityMaxIdleTime` [1 minute]: an entity with no message for this long is passivated (stopped); the
 *   next message starts it again.
 * - `entityTerminationTimeout` [3 seconds]: how long an entity may take to stop (finalizers, mailbox
 *   drain) when its shard leaves the pod.
 * - `refreshAssignmentsRetryInterval` [5 seconds]: a 2024 key, read but not used: the heartbeat (every
 *   `leaseRenewalInterval`) refreshes the routing table.
 * - `unhealthyPodReportInterval` [5 seconds]: at most one "pod unreachable" report per pod per interval.
 * - `leaseDuration` [30 seconds]: how long a heartbeat's grant lets the pod hold its shards, measured on
 *   the pod's monotonic clock from when it sent the heartbeat. The manager grants at most its own
 *   `leaseDuration`.
 * - `leaseRenewalInterval` [10 seconds]: heartbeat period; at most `leaseDuration / 3`.
 * - `leaseMargin` [5 seconds]: the pod's slack for one late renewal, used only by the start-up check
 *   `entityTerminationTimeout < leaseDuration - leaseRenewalInterval - leaseMargin`. When a silent pod's
 *   shards move is the manager's `ManagerConfig.leaseMargin` (500 millis).
 * - `sendRetryInterval` [100 millis]: pause between routing retries of `send`.
 * - `sendRetryTimeout` [10 seconds]: routing failures are retried until this much time has passed since
 *   the first attempt; then `send` fails with `MessageNotDeliveredException` or
 *   `MessageOutcomeUnknownException`.
 * - `entityMailboxCapacity` [4096]: messages waiting for one entity; beyond it `MailboxFullException`.
 * - `maxEntitiesPerPod` [100000]: live entities on this pod; beyond it `EntityCapacityExceededException`.
 * - `entityDeduplicationCapacity` [1000]: replies remembered per entity (by primary key) to answer a
 *   retried message without processing it again; the oldest are forgotten first.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardingConfig {
  readonly numberOfShards: number
  readonly selfHost: string
  readonly shardingPort: number
  readonly shardManagerUri: string
  readonly serverVersion: string
  readonly entityMaxIdleTime: Duration.Duration
  readonly entityTerminationTimeout: Duration.Duration
  readonly refreshAssignmentsRetryInterval: Duration.Duration
  readonly unhealthyPodReportInterval: Duration.Duration
  readonly leaseDuration: Duration.Duration
  readonly leaseRenewalInterval: Duration.Duration
  readonly leaseMargin: Duration.Duration
  readonly sendRetryInterval: Duration.Duration
  readonly sendRetryTimeout: Duration.Duration
  readonly entityMailboxCapacity: number
  readonly maxEntitiesPerPod: number
  readonly entityDeduplicationCapacity: number
}

/**
 * @since 0.1.0
 * @category context
 */
export const ShardingConfig: Context.Tag<ShardingConfig, ShardingConfig> = Context.GenericTag<ShardingConfig>(
  "@effect-cluster/cluster/ShardingConfig"
)

/**
 * The default values.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultValues: ShardingConfig = {
  numberOfShards: 300,
  selfHost: "localhost",
  shardingPort: 54321,
  shardManagerUri: "http://localhost:8080/api/rest",
  serverVersion: "1.0.0",
  entityMaxIdleTime: Duration.minutes(1),
  entityTerminationTimeout: Duration.seconds(3),
  refreshAssignmentsRetryInterval: Duration.seconds(5),
  unhealthyPodReportInterval: Duration.seconds(5),
  leaseDuration: Duration.seconds(30),
  leaseRenewalInterval: Duration.seconds(10),
  leaseMargin: Duration.seconds(5),
  sendRetryInterval: Duration.millis(100),
  sendRetryTimeout: Duration.seconds(10),
  entityMailboxCapacity: 4096,
  maxEntitiesPerPod: 100_000,
  entityDeduplicationCapacity: 1000
}

/**
 * Checks the lease timing rules: `leaseRenewalInterval <= leaseDuration / 3` and
 * `entityTerminationTimeout < leaseDuration - leaseRenewalInterval - leaseMargin`. `Sharding.live` runs
 * it at start-up and dies with the error if a rule is broken.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (config: ShardingConfig): Effect.Effect<void, InvalidConfigurationException> => {
  const lease = Duration.toMillis(config.leaseDuration)
  const renewal = Duration.toMillis(config.leaseRenewalInterval)
  const margin = Duration.toMillis(config.leaseMargin)
  const termination = Duration.toMillis(config.entityTerminationTimeout)
  if (!(config.numberOfShards >= 1 && Number.isInteger(config.numberOfShards))) {
    return Effect.fail(new InvalidConfigurationException({ reason: "numberOfShards must be a positive integer" }))
  }
  if (!(renewal > 0 && renewal * 3 <= lease)) {
    return Effect.fail(
      new InvalidConfigurationException({
        reason: `leaseRenewalInterval (${renewal} ms) must be positive and at most leaseDuration / 3 (${lease / 3} ms)`
      })
    )
  }
  if (!(termination < lease - renewal - margin)) {
    return Effect.fail(
      new InvalidConfigurationException({
        reason: `entityTerminationTimeout (${termination} ms) must be less than leaseDuration - leaseRenewalInterval - leaseMargin (${
          lease - renewal - margin
        } ms)`
      })
    )
  }
  return Effect.void
}

/**
 * The defaults as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const defaults: Layer.Layer<ShardingConfig> = Layer.succeed(ShardingConfig, defaultValues)

/**
 * The defaults with some values replaced.
 *
 * @since 0.1.0
 * @category layers
 */
export const withDefaults = (customs: Partial<ShardingConfig>): Layer.Layer<ShardingConfig> =>
  Layer.succeed(ShardingConfig, { ...defaultValues, ...customs })

const millis = (name: string, fallback: Duration.Duration) =>
  Config.integer(name).pipe(
    Config.map(Duration.millis),
    Config.withDefault(fallback),
    Config.withDescription(`${name} in milliseconds`)
  )

/**
 * Reads the configuration from the `ConfigProvider` (environment variables by default), falling back to
 * the defaults for missing keys. Keys (durations in milliseconds): `NUMBER_OF_SHARDS`, `SELF_HOST`,
 * `PORT`, `SHARD_MANAGER_URI`, `SERVER_VERSION`, `ENTITY_MAX_IDLE_TIME`, `ENTITY_TERMINATION_TIMEOUT`,
 * `REFRESH_ASSIGNMENTS_INTERVAL`, `UNHEALTHY_POD_REPORT_INTERVAL` (2024), and `LEASE_DURATION`,
 * `LEASE_RENEWAL_INTERVAL`, `LEASE_MARGIN`, `SEND_RETRY_INTERVAL`, `SEND_RETRY_TIMEOUT`,
 * `ENTITY_MAILBOX_CAPACITY`, `MAX_ENTITIES_PER_POD`, `ENTITY_DEDUPLICATION_CAPACITY`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const config: Config.Config<ShardingConfig> = Config.all({
  numberOfShards: Config.integer("NUMBER_OF_SHARDS").pipe(Config.withDefault(defaultValues.numberOfShards)),
  selfHost: Config.string("SELF_HOST").pipe(Config.withDefault(defaultValues.selfHost)),
  shardingPort: Config.integer("PORT").pipe(Config.withDefault(defaultValues.shardingPort)),
  shardManagerUri: Config.string("SHARD_MANAGER_URI").pipe(
    Config.withDefault(defaultValues.shardManagerUri),
    Config.withDescription("the shard manager's URI, or every manager's (active and standbys), comma-separated")
  ),
  serverVersion: Config.string("SERVER_VERSION").pipe(Config.withDefault(defaultValues.serverVersion)),
  entityMaxIdleTime: millis("ENTITY_MAX_IDLE_TIME", defaultValues.entityMaxIdleTime),
  entityTerminationTimeout: millis("ENTITY_TERMINATION_TIMEOUT", defaultValues.entityTerminationTimeout),
  refreshAssignmentsRetryInterval: millis(
    "REFRESH_ASSIGNMENTS_INTERVAL",
    defaultValues.refreshAssignmentsRetryInterval
  ),
  unhealthyPodReportInterval: millis("UNHEALTHY_POD_REPORT_INTERVAL", defaultValues.unhealthyPodReportInterval),
  leaseDuration: millis("LEASE_DURATION", defaultValues.leaseDuration),
  leaseRenewalInterval: millis("LEASE_RENEWAL_INTERVAL", defaultValues.leaseRenewalInterval),
  leaseMargin: millis("LEASE_MARGIN", defaultValues.leaseMargin),
  sendRetryInterval: millis("SEND_RETRY_INTERVAL", defaultValues.sendRetryInterval),
  sendRetryTimeout: millis("SEND_RETRY_TIMEOUT", defaultValues.sendRetryTimeout),
  entityMailboxCapacity: Config.integer("ENTITY_MAILBOX_CAPACITY").pipe(
    Config.withDefault(defaultValues.entityMailboxCapacity)
  ),
  maxEntitiesPerPod: Config.integer("MAX_ENTITIES_PER_POD").pipe(Config.withDefault(defaultValues.maxEntitiesPerPod)),
  entityDeduplicationCapacity: Config.integer("ENTITY_DEDUPLICATION_CAPACITY").pipe(
    Config.withDefault(defaultValues.entityDeduplicationCapacity)
  )
})

/**
 * The configuration read with `config`, as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const fromConfig: Layer.Layer<ShardingConfig, ConfigError.ConfigError> = Layer.effect(
  ShardingConfig,
  config
)
