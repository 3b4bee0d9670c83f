import { Sharding } from "@effect-cluster/cluster"
import { Effect } from "effect"
import { Counter, counterBehaviour } from "./counter.js"

/**
 * Records every entity start and stop with its pod, and flags any moment at which one entity runs on two
 * pods. Pods marked crashed are treated as stopped at once (a dead process runs nothing, not even
 * finalizers), and their later events are ignored.
 */
export class Observer {
  readonly running = new Map<string, Set<number>>()
  readonly events: Array<string> = []
  readonly violations: Array<string> = []
  readonly crashed = new Set<number>()

  start(pod: number, entityId: string): void {
    if (this.crashed.has(pod)) return
    const set = this.running.get(entityId) ?? new Set()
    if (set.size > 0) this.violations.push(`${entityId} started on ${pod} while running on ${[...set].join(",")}`)
    set.add(pod)
    this.running.set(entityId, set)
    this.events.push(`start ${entityId}@${pod}`)
  }

  stop(pod: number, entityId: string): void {
    if (this.crashed.has(pod)) return
    this.running.get(entityId)?.delete(pod)
    this.events.push(`stop ${entityId}@${pod}`)
  }

  crash(pod: number): void {
    this.crashed.add(pod)
    for (const set of this.running.values()) set.delete(pod)
  }

  where(entityId: string): Array<number> {
    return [...(this.running.get(entityId) ?? [])]
  }

  /** The pod set-up: a counter entity type whose instances report to this observer. */
  counterOn(pod: number): Effect.Effect<void, never, Sharding.Sharding> {
    return Sharding.registerEntity(Counter)(counterBehaviour({
      onStart: (entityId) => Effect.sync(() => this.start(pod, entityId)),
      onStop: (entityId) => Effect.sync(() => this.stop(pod, entityId))
    }))
  }
}
