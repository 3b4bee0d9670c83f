/**
 * What the pod processes of the multi-process cluster tests share (clusterPod.ts, chaosPod.ts): their
 * configuration, the short lease timings, the pod layer (network transport, `NodeCluster.layerPod`, on the
 * configured SQL journal), and the submitter's loop.
 */
import type { Sharding } from "@effect-cluster/cluster"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect, Schedule } from "effect"
import type * as Scope from "effect/Scope"
import * as NodeCluster from "../../../cluster/src/node/NodeCluster.js"
import type { DurableExecutionJournal } from "../../src/DurableExecutionJournal.js"
import type { ChildConfig } from "./child.js"
import { journalLayer, main } from "./child.js"

export interface PodConfig extends ChildConfig {
  readonly managerUri: string
  readonly pod: number
  /** Execution ids this pod starts once registered (the submitter); empty for the others. */
  readonly submit: ReadonlyArray<string>
}

/** Shards of the test clusters (the manager's and every pod's). */
export const numberOfShards = 30

/** Short leases: a silent pod's shards move after lease + margin (4 s). */
export const podTimings = {
  leaseDuration: Duration.seconds(3),
  leaseRenewalInterval: Duration.seconds(1),
  leaseMargin: Duration.seconds(1),
  entityTerminationTimeout: Duration.millis(500)
}

/** The manager's settings matching `podTimings`. */
export const managerTimings = {
  numberOfShards,
  rebalanceRate: 1,
  rebalanceInterval: Duration.seconds(1),
  leaseDuration: podTimings.leaseDuration,
  leaseMargin: podTimings.leaseMargin
}

/** Runs a pod process's program with the pod (network transport) and the journal in context. */
export const runPod = (
  config: PodConfig,
  program: Effect.Effect<
    void,
    unknown,
    Sharding.Sharding | DurableExecutionJournal | SqlClient.SqlClient | Scope.Scope
  >
): void =>
  main(
    program.pipe(
      Effect.scoped,
      Effect.provide(NodeCluster.layerPod({
        sharding: { shardingPort: 0, shardManagerUri: config.managerUri, numberOfShards, ...podTimings },
        transport: { host: "127.0.0.1" }
      })),
      Effect.provide(journalLayer(config))
    )
  )

/** Starts every id (ten at a time), retrying a start that meets a moving shard or a dead owner. */
export const startAll = <E, R>(
  ids: ReadonlyArray<string>,
  start: (id: string, index: number) => Effect.Effect<unknown, E, R>
): Effect.Effect<void, E, R> =>
  Effect.forEach(
    ids,
    (id, i) => start(id, i).pipe(Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.intersect(Schedule.recurs(150))))),
    { concurrency: 10, discard: true }
  )
