/**
 * Who decides which engine runs an execution: the one place where the in-process engine and the cluster
 * engine differ in that.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { ExecutionKey } from "../DurableExecutionJournal.js"
import type { Engine } from "./engine.js"

/** @internal */
export interface Ownership {
  /** The background loop that resumes what engines that died left behind, if this policy has one. */
  readonly watchOthers: (engine: Engine) => Effect.Effect<never> | undefined
  /** The engine's liveness registration is lost: what happens to the executions it runs. */
  readonly registrationLost: (engine: Engine) => void
  /** Whether a runnable execution woken here is left to other live engines rather than claimed here. */
  readonly leaveToOthers: (engine: Engine, key: ExecutionKey) => Effect.Effect<boolean>
}

/**
 * The in-process engine: claims with leases decide. An engine resumes what dead engines leave (the
 * liveness watch), leaves a runnable execution to other live engines of its workflow (a CLI, a webhook
 * handler keeps no claim it might not run), and stops its executions when its registration is lost, since
 * others may now take them.
 *
 * @internal
 */
export const claims: Ownership = {
  watchOthers: (engine) => engine.liveness.watch,
  registrationLost: (engine) => {
    for (const runtime of engine.live.values()) runtime.notifyClaimLost()
  },
  leaveToOthers: (engine, key) => {
    const registration = engine.liveness.registration
    const otherLiveEngines = engine.journal.otherLiveEngines
    if (registration === undefined || otherLiveEngines === undefined) return Effect.succeed(false)
    return Effect.map(
      Effect.either(otherLiveEngines(registration, key.workflow)),
      (others) => Either.isRight(others) && others.right > 0
    )
  }
}

/**
 * The cluster engine: the owner of the execution's shard decides, and claims sit under that ownership
 * (only the owning pod's engine claims). Nobody takes an execution over by liveness, nothing is left to
 * other engines, and a lost registration stops nothing: the pod keeps its executions until the shard
 * moves, when the shard stop ends them.
 *
 * @internal
 */
export const shard: Ownership = {
  watchOthers: () => undefined,
  registrationLost: () => {},
  leaveToOthers: () => Effect.succeed(false)
}
