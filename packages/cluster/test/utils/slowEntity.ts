import { Sharding } from "@effect-cluster/cluster"
import { Duration, Effect, HashSet } from "effect"
import { eventually, makeTestCluster } from "./cluster.js"
import { Counter, counterBehaviour, freshId, GetCount } from "./counter.js"

/**
 * A cluster of one shard held by pod 1 (its epoch there), whose Counter entities' finalizers take `stopMillis`
 * and then record the entity in `stopped`; `startEntity` starts entity "e".
 */
export const onePodWithSlowEntities = (stopMillis: number) =>
  Effect.gen(function*() {
    const stopped: Array<string> = []
    const cluster = yield* makeTestCluster({ numberOfShards: 1, pod: { entityMaxIdleTime: Duration.minutes(10) } })
    yield* cluster.startManager
    const a = yield* cluster.startPod(
      1,
      Sharding.registerEntity(Counter)(counterBehaviour({
        onStop: (entityId) =>
          Effect.zipRight(Effect.sleep(Duration.millis(stopMillis)), Effect.sync(() => void stopped.push(entityId)))
      }))
    )
    yield* eventually(Effect.map(a.sharding.getAssignedShardIds, (s) => HashSet.size(s) === 1))
    const epoch = (yield* a.sharding.servedShardEpochs).get(1)!
    const startEntity = a.sharding.messenger(Counter).send("e")(new GetCount({ messageId: freshId() }))
    return { cluster, a, epoch, stopped, startEntity }
  })
