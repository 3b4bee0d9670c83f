/**
 * The demo's settings, shared by the demo (examples/demo/main.ts) and its pod processes: shard count and the
 * short leases that make a pod's death noticed within seconds (the defaults are a 30 s lease and a 5 s
 * margin; see docs/cluster.md).
 */
import { Duration } from "effect"

/** Shards of the demo's cluster (the manager's and every pod's). */
export const numberOfShards = 60

/**
 * A pod's lease, renewed twice a second (a renewal may take up to 4 s on a busy machine before the pod
 * stops serving); the manager moves a silent pod's shards after lease + margin.
 */
export const leaseDuration = Duration.seconds(5)
export const leaseRenewalInterval = Duration.millis(500)
export const leaseMargin = Duration.seconds(1)
/** How long an entity may take to stop (must fit in the lease, after the renewal and the margin). */
export const entityTerminationTimeout = Duration.millis(500)

/** How often a pod compares the shards it serves with those whose executions it has taken over. */
export const shardCheckInterval = Duration.millis(200)

/** The sharding settings of a pod (and of the demo's client). */
export const podSharding = {
  numberOfShards,
  leaseDuration,
  leaseRenewalInterval,
  leaseMargin,
  entityTerminationTimeout
}

/** The manager's environment (read by the `effect-cluster manager` command). */
export const managerEnv: Record<string, string> = {
  NUMBER_OF_SHARDS: String(numberOfShards),
  LEASE_DURATION: String(Duration.toMillis(leaseDuration)),
  LEASE_MARGIN: String(Duration.toMillis(leaseMargin)),
  // Balance in one round (all three pods join at once), and check every second.
  REBALANCE_RATE: "1",
  REBALANCE_INTERVAL: "1000",
  PING_TIMEOUT: "1000"
}

/** The journal's busy retries: four processes write to one SQLite file. */
export const busyRetries = 40
