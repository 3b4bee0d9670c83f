/**
 * The layer that moves the seed program (examples/process-payment.ts) onto the cluster, with no other
 * change to it: a shard manager and a pod in this process (in-process transport), the SQL journal on a
 * SQLite file, and `ClusterWorkflowEngine.layer`, which makes the seed's `WorkflowEngine.makeScoped`
 * build the cluster engine. examples/test/seed-on-cluster.test.ts runs the seed with this layer in place of
 * `DurableExecutionJournalInMemory.activityJournalInMemory`.
 */
import { InProcessTransport, Sharding } from "@effect-cluster/cluster"
import { ClusterWorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import { Layer } from "effect"

/** The cluster engine, its SQL journal on `filename`, and one registered pod. */
export const seedOnCluster = (filename: string) => {
  const pod = Layer.scopedDiscard(Sharding.registerScoped).pipe(
    Layer.provideMerge(InProcessTransport.layerPod({ shardingPort: 1 })),
    Layer.provide(InProcessTransport.layerCluster())
  )
  return ClusterWorkflowEngine.layer({ prefix: "seed" }).pipe(
    Layer.provideMerge(Sqlite.layer({ filename, prefix: "seed" })),
    Layer.provide(pod),
    Layer.orDie
  )
}
