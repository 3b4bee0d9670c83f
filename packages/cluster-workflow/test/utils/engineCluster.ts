/**
 * Several pods in one process over the in-process transport, each running the cluster engine on its own
 * connection to a shared database (a SQLite file or PostgreSQL tables): the setup of the tests of workflows
 * on the cluster. Live clock, short leases.
 */
import type { Message } from "@effect-cluster/cluster"
import { Sharding } from "@effect-cluster/cluster"
import type { Workflow, WorkflowEngine as WorkflowEngineNs } from "@effect-cluster/cluster-workflow"
import { ClusterWorkflowEngine, DurableExecutionJournal, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import type { DurationInput } from "effect/Duration"
import type { SqlClient } from "@effect/sql/SqlClient"
import { Context, Duration, Effect, Exit, Layer, Schedule, Scope } from "effect"
import { makeTestCluster } from "../../../cluster/test/utils/cluster.js"
import type { SharedDatabase } from "./journals.js"
import { postgresSkipReason, sharedPostgres, sharedSqlite } from "./journals.js"

/** The port of the pod an activity runs on (provided to each pod's engine). */
export class PodName extends Context.Tag("test/PodName")<PodName, number>() {}

/** Short leases, so that shards move within a few seconds of a pod leaving or crashing. */
export const podTimings = {
  leaseDuration: Duration.seconds(2),
  leaseRenewalInterval: Duration.millis(500),
  leaseMargin: Duration.millis(500),
  entityTerminationTimeout: Duration.millis(300)
}

/** One pod of the cluster with its engine. */
export interface EnginePod<T extends Message.Message.Any> {
  readonly port: number
  readonly sharding: Sharding.Sharding
  readonly engine: WorkflowEngineNs.WorkflowEngine<T>
  /** How many times this pod's engine read one execution's row (`Journal.get`: a caller's poll reads it). */
  readonly reads: { count: number }
  /** Graceful: the engine stops (recording nothing), the pod unregisters, hands its shards back. */
  readonly leave: Effect.Effect<void>
  /** The transport cuts the pod off; its engine keeps running until its lease ends by its own clock. */
  readonly crash: Effect.Effect<void>
}

/**
 * A test cluster of 30 shards (its manager started) whose pods each run the cluster engine on their own
 * connection to the shared database; `startPod(port)` adds one. The workflow runs with its pod's `PodName`
 * and its pod's `SqlClient` (the journal's: a transactional activity's transaction is on it).
 */
export const makeEngineCluster = <T extends Message.Message.Any>(
  database: SharedDatabase,
  workflow: Workflow.Workflow<T, PodName | SqlClient>,
  options: {
    readonly shardCheckInterval: DurationInput
    /** The engines' grace period at shutdown (default 0: see `EngineOptions.shutdownGracePeriod`). */
    readonly shutdownGracePeriod?: DurationInput
    /** The pods' `entityTerminationTimeout` and lease (default `podTimings`'). */
    readonly entityTerminationTimeout?: Duration.Duration
    readonly leaseDuration?: Duration.Duration
    /** How each engine sees its pod (default: as it is). */
    readonly podView?: (sharding: Sharding.Sharding) => Sharding.Sharding
    /** The manager's revocation call gives up after this, as over the network (default: it waits). */
    readonly unassignTimeout?: Duration.Duration
    /** The engines' claim lease (default: the engine's, 30 s). */
    readonly claimLease?: DurationInput
    /** How each engine sees the shared journal (default: as it is). */
    readonly journalView?: (journal: DurableExecutionJournal.Journal) => DurableExecutionJournal.Journal
  }
) =>
  Effect.gen(function*() {
    const cluster = yield* makeTestCluster({
      numberOfShards: 30,
      ...(options.unassignTimeout === undefined ? {} : { unassignTimeout: options.unassignTimeout }),
      manager: {
        rebalanceRate: 1,
        leaseDuration: options.leaseDuration ?? podTimings.leaseDuration,
        leaseMargin: Duration.millis(500),
        rebalanceInterval: Duration.seconds(1)
      }
    })
    yield* cluster.startManager
    const outer = yield* Effect.scope
    const startPod = (port: number) =>
      Effect.gen(function*() {
        const pod = yield* cluster.startPod(port, undefined, {
          ...podTimings,
          leaseDuration: options.leaseDuration ?? podTimings.leaseDuration,
          entityTerminationTimeout: options.entityTerminationTimeout ?? podTimings.entityTerminationTimeout
        })
        const scope = yield* Scope.fork(outer, undefined as any)
        const journal = yield* Layer.buildWithScope(database.journal(), scope)
        const reads = { count: 0 }
        const inner = Context.get(journal, DurableExecutionJournal.DurableExecutionJournal)
        const counted: DurableExecutionJournal.Journal = {
          ...inner,
          get: (key) => Effect.zipRight(Effect.sync(() => reads.count++), inner.get(key))
        }
        const engine = yield* WorkflowEngine.makeScoped(workflow).pipe(
          Effect.provide(Layer.succeedContext(journal)),
          Effect.provide(ClusterWorkflowEngine.layer({
            prefix: database.prefix,
            shardCheckInterval: options.shardCheckInterval,
            ...(options.claimLease === undefined ? {} : { claimLease: options.claimLease }),
            ...(options.shutdownGracePeriod === undefined ? {} : { shutdownGracePeriod: options.shutdownGracePeriod })
          })),
          Effect.provideService(Sharding.Sharding, options.podView?.(pod.sharding) ?? pod.sharding),
          Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, options.journalView?.(counted) ?? counted),
          Effect.provideService(PodName, port),
          Scope.extend(scope)
        )
        return {
          port,
          sharding: pod.sharding,
          engine,
          reads,
          leave: Effect.zipRight(Scope.close(scope, Exit.void), pod.leave),
          crash: pod.crash
        } satisfies EnginePod<T>
      })
    return { cluster, startPod, stopManager: cluster.stopManager }
  })

/** Repeats `condition` on the live clock every 50 ms until it holds (at most `within`). */
export const until = (condition: Effect.Effect<boolean, any>, within: DurationInput = "20 seconds") =>
  condition.pipe(
    Effect.flatMap((holds) => holds ? Effect.void : Effect.fail("not yet" as const)),
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error("condition not reached") }),
    Effect.orDie
  )

/** The shards a pod serves. */
export const served = (pod: { readonly sharding: Sharding.Sharding }) =>
  Effect.map(pod.sharding.servedShardEpochs, (shards) => Array.from(shards.keys()))

/** The shared databases the cluster tests run on; PostgreSQL is skipped only when unreachable. */
export const clusterDatabases: ReadonlyArray<{
  readonly name: string
  readonly make: Effect.Effect<SharedDatabase, never, Scope.Scope>
  readonly skip: string | undefined
}> = [
  { name: "sqlite", make: sharedSqlite, skip: undefined },
  { name: "postgres", make: sharedPostgres, skip: postgresSkipReason }
]
