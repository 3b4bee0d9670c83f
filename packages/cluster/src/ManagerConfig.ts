/**
 * The configuration of the shard manager, with documented defaults.
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
 * The shard manager's configuration. Defaults in brackets.
 *
 * - `numberOfShards` [300]: must equal every pod's.
 * - `apiPort` [8080]: the port of the network manager (`NodeCluster.layerManager`); unused in-process.
 * - `rebalanceInterval` [20 seconds]: period of the balancing round when nothing triggers one earlier (a
 *   registration triggers one at once).
 * - `rebalanceFollowUpInterval` [250 millis]: while balancing rounds still move shards, the next round
 *   follows after this pause rather than `rebalanceInterval`, so a pod joining a small cluster gets its
 *   share within seconds (150 of 300 shards: 25 rounds of 6) while no round moves more than its bound.
 * - `rebalanceRetryInterval` [10 seconds]: pause before the next round after a round in which a step
 *   failed (an unassignment the old owner did not confirm, or an assignment that could not be persisted).
 * - `pingTimeout` [3 seconds]: how long a health ping of `PodsHealth.local` may take.
 * - `persistRetryInterval` [3 seconds], `persistRetryCount` [100]: retries of a failed storage read or
 *   write. A grant is published only once its write succeeded; one whose write still fails is withdrawn.
 * - `rebalanceRate` [0.02]: at most `max(1, ceil(numberOfShards * rebalanceRate))` shards move per
 *   balancing round (6 of 300). Unassigned shards are always assigned at once.
 * - `leaseDuration` [30 seconds]: the lease granted with each heartbeat.
 * - `leaseMargin` [500 millis]: the manager reassigns a silent pod's shards only after its last grant +
 *   `leaseDuration` + `leaseMargin` on the manager's monotonic clock (after a restart: start +
 *   `leaseDuration` + `leaseMargin`) and, on a `LeasedStorage`, once the shard's lease in the database has
 *   been over for `leaseMargin` on the database's clock. The pod counts its lease from when it sent the
 *   renewal and stops work `entityTerminationTimeout` before its end, so the margin only has to cover how
 *   far two clocks' rates can differ over one lease (docs/cluster.md, "Why the margin is enough").
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagerConfig {
  readonly numberOfShards: number
  readonly apiPort: number
  readonly rebalanceInterval: Duration.Duration
  readonly rebalanceFollowUpInterval: Duration.Duration
  readonly rebalanceRetryInterval: Duration.Duration
  readonly pingTimeout: Duration.Duration
  readonly persistRetryInterval: Duration.Duration
  readonly persistRetryCount: number
  readonly rebalanceRate: number
  readonly leaseDuration: Duration.Duration
  readonly leaseMargin: Duration.Duration
}

/**
 * @since 0.1.0
 * @category context
 */
export const ManagerConfig: Context.Tag<ManagerConfig, ManagerConfig> = Context.GenericTag<ManagerConfig>(
  "@effect-cluster/cluster/ManagerConfig"
)

/**
 * The default values.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultValues: ManagerConfig = {
  numberOfShards: 300,
  apiPort: 8080,
  rebalanceInterval: Duration.seconds(20),
  rebalanceFollowUpInterval: Duration.millis(250),
  rebalanceRetryInterval: Duration.seconds(10),
  pingTimeout: Duration.seconds(3),
  persistRetryInterval: Duration.seconds(3),
  persistRetryCount: 100,
  rebalanceRate: 2 / 100,
  leaseDuration: Duration.seconds(30),
  leaseMargin: Duration.millis(500)
}

/**
 * Checks the manager's values (positive lease and margin, a rate in (0, 1]).
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (config: ManagerConfig): Effect.Effect<void, InvalidConfigurationException> => {
  if (!(Duration.toMillis(config.leaseDuration) > 0 && Duration.toMillis(config.leaseMargin) > 0)) {
    return Effect.fail(new InvalidConfigurationException({ reason: "leaseDuration and leaseMargin must be positive" }))
  }
  if (!(config.rebalanceRate > 0 && config.rebalanceRate <= 1)) {
    return Effect.fail(new InvalidConfigurationException({ reason: "rebalanceRate must be in (0, 1]" }))
  }
  if (!(config.persistRetryCount >= 0 && Number.isInteger(config.persistRetryCount))) {
    return Effect.fail(new InvalidConfigurationException({ reason: "persistRetryCount must be a non-negative integer" }))
  }
  if (!(config.numberOfShards >= 1 && Number.isInteger(config.numberOfShards))) {
    return Effect.fail(new InvalidConfigurationException({ reason: "numberOfShards must be a positive integer" }))
  }
  return Effect.void
}

/**
 * The defaults as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const defaults: Layer.Layer<ManagerConfig> = Layer.succeed(ManagerConfig, defaultValues)

/**
 * The defaults with some values replaced.
 *
 * @since 0.1.0
 * @category layers
 */
export const withDefaults = (customs: Partial<ManagerConfig>): Layer.Layer<ManagerConfig> =>
  Layer.succeed(ManagerConfig, { ...defaultValues, ...customs })

const millis = (name: string, fallback: Duration.Duration) =>
  Config.integer(name).pipe(
    Config.map(Duration.millis),
    Config.withDefault(fallback),
    Config.withDescription(`${name} in milliseconds`)
  )

/**
 * Reads the configuration (durations in milliseconds), falling back to the defaults: `NUMBER_OF_SHARDS`,
 * `API_PORT`, `REBALANCE_INTERVAL`, `REBALANCE_FOLLOW_UP_INTERVAL`, `REBALANCE_RETRY_INTERVAL`, `PING_TIMEOUT`, `PERSIST_RETRY_INTERVAL`,
 * `PERSIST_RETRY_COUNT`, `REBALANCE_RATE` (2024), `LEASE_DURATION`, `LEASE_MARGIN`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const config: Config.Config<ManagerConfig> = Config.all({
  numberOfShards: Config.integer("NUMBER_OF_SHARDS").pipe(Config.withDefault(defaultValues.numberOfShards)),
  apiPort: Config.integer("API_PORT").pipe(Config.withDefault(defaultValues.apiPort)),
  rebalanceInterval: millis("REBALANCE_INTERVAL", defaultValues.rebalanceInterval),
  rebalanceFollowUpInterval: millis("REBALANCE_FOLLOW_UP_INTERVAL", defaultValues.rebalanceFollowUpInterval),
  rebalanceRetryInterval: millis("REBALANCE_RETRY_INTERVAL", defaultValues.rebalanceRetryInterval),
  pingTimeout: millis("PING_TIMEOUT", defaultValues.pingTimeout),
  persistRetryInterval: millis("PERSIST_RETRY_INTERVAL", defaultValues.persistRetryInterval),
  persistRetryCount: Config.integer("PERSIST_RETRY_COUNT").pipe(Config.withDefault(defaultValues.persistRetryCount)),
  rebalanceRate: Config.number("REBALANCE_RATE").pipe(Config.withDefault(defaultValues.rebalanceRate)),
  leaseDuration: millis("LEASE_DURATION", defaultValues.leaseDuration),
  leaseMargin: millis("LEASE_MARGIN", defaultValues.leaseMargin)
})

/**
 * The configuration read with `config`, as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const fromConfig: Layer.Layer<ManagerConfig, ConfigError.ConfigError> = Layer.effect(ManagerConfig, config)
