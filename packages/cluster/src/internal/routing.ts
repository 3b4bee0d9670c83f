import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { PodAddress } from "../PodAddress.js"
import type { ShardAssignment } from "../ShardAssignment.js"
import { podKeyOf, type PodState } from "./podState.js"

/** The routing table's upkeep: where each shard lives, as the manager last said. */
export interface Routing {
  /** Takes an assignment into the table unless the table already knows a later epoch. */
  readonly updateRoute: (assignment: ShardAssignment) => void
  /** Reloads the table from the manager (coalesced: concurrent callers share one request). */
  readonly refreshAssignments: Effect.Effect<void>
  /** Tells the manager a pod did not answer (at most once per `unhealthyPodReportInterval` per pod). */
  readonly reportUnhealthy: (pod: PodAddress) => void
}

export const makeRouting = (state: PodState): Routing => {
  const { client, config, fork, monotonicMillis } = state.services
  const lastUnhealthyReport = new Map<string, number>()

  const updateRoute = (assignment: ShardAssignment): void => {
    const route = state.routing[assignment.shardId]
    if (route === undefined || route.epoch <= assignment.epoch) {
      state.routing[assignment.shardId] = assignment.pod === null
        ? { pod: undefined, podKey: "", epoch: assignment.epoch }
        : { pod: assignment.pod, podKey: podKeyOf(assignment.pod), epoch: assignment.epoch }
    }
  }

  let refreshInFlight: Effect.Effect<void> | undefined
  const refreshAssignments: Effect.Effect<void> = Effect.suspend(() => {
    if (refreshInFlight !== undefined) return refreshInFlight
    const run = client.getShardAssignments.pipe(
      Effect.map((assignments) => {
        for (const assignment of assignments) {
          if (state.inRange(assignment.shardId)) updateRoute(assignment)
        }
      }),
      Effect.catchAll(() => Effect.void),
      Effect.ensuring(Effect.sync(() => void (refreshInFlight = undefined)))
    )
    const cached = Effect.runSync(Effect.cached(run))
    refreshInFlight = cached
    return cached
  })

  const reportUnhealthy = (pod: PodAddress): void => {
    const key = podKeyOf(pod)
    const now = monotonicMillis()
    const last = lastUnhealthyReport.get(key)
    if (last !== undefined && now - last < Duration.toMillis(config.unhealthyPodReportInterval)) return
    lastUnhealthyReport.set(key, now)
    fork(Effect.ignore(client.notifyUnhealthyPod(pod)))
  }

  return { updateRoute, refreshAssignments, reportUnhealthy }
}
