/**
 * A SIGKILL and an immediate restart, with real processes and the default engine options (issue 9 #4):
 * Liveness.test.ts checks it, bench/restart.ts measures it. No vitest here.
 *
 * A first process (livenessChild.ts, `serve`) starts execution `t1` of the `Task` workflow and is killed
 * with SIGKILL inside its `work` activity (attempt 0 never ends); a second process, another random
 * identity, is started at once and nobody sends or awaits `t1`: it must resume on its own (the activity's
 * attempt 1). Its start-up finds the first engine dead (PostgreSQL: its database session is gone; SQLite:
 * its pid is gone) and takes the execution over; without that it would wait for the dead engine's claim
 * to end (30 s by default).
 */
import { Effect, Option } from "effect"
import type * as Scope from "effect/Scope"
import type { ExecutionKey, ExecutionRow } from "../../src/DurableExecutionJournal.js"
import type { JournalError } from "../../src/DurableExecutionJournal.js"
import { type Child, prepareChildren, spawnChild } from "./children.js"
import type { ChildConfig } from "./child.js"

/** The database both processes use, and how the parent reads an execution's row. */
export interface RestartTarget {
  readonly dialect: ChildConfig["dialect"]
  readonly location: string
  readonly prefix: string
  readonly get: (key: ExecutionKey) => Effect.Effect<Option.Option<ExecutionRow>, JournalError>
}

/** The claim the killed engine held on `t1` when it died. */
export interface DeadClaim {
  readonly owner: string
  readonly epoch: number
  /** When the claim would end without renewal (epoch millis, the engines' clock). */
  readonly claimUntil: number
}

export interface Restart {
  /** The second process, running the resumed execution. */
  readonly second: Child
  readonly deadClaim: DeadClaim
  /** The resumed execution's next step (the activity's attempt 1) began at this time (epoch millis). */
  readonly resumedAt: number
  readonly attempt: number
  /** From the SIGKILL to the resumed execution's next step (the new process's Node start-up included). */
  readonly killToResumeMillis: number
  /** Of which: from the SIGKILL to the new process's modules loaded (Node's start-up). */
  readonly bootMillis: number
  /** Of which: opening the journal (connecting, migrations) in the new process. */
  readonly journalOpenMillis: number
  /** Of which: from the new process's engine start (its journal open) to the resumed execution's next step. */
  readonly engineToResumeMillis: number
}

export const taskKey: ExecutionKey = { workflow: "Task", executionId: "t1" }

/** The configuration of a livenessChild.ts process on the target's database. */
export const livenessConfig = (
  target: Pick<RestartTarget, "dialect" | "location" | "prefix">,
  mode: "serve" | "signal",
  extra: Record<string, unknown> = {}
) => ({
  dialect: target.dialect,
  location: target.location,
  prefix: target.prefix,
  identity: "unused",
  run: 0,
  mode,
  ...extra
})

/** Kills a process inside an activity of `t1` and starts another at once; see the module comment. */
export const killAndRestart = (target: RestartTarget): Effect.Effect<Restart, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* prepareChildren
    const first = yield* spawnChild(`${target.dialect} first`, "livenessChild.ts", livenessConfig(target, "serve"))
    yield* first.expect("booted", 20_000)
    yield* first.expect("starting", 20_000)
    const ready = yield* first.expect("ready", 10_000)
    yield* first.send("start t1")
    const work0 = yield* first.expect("work", 10_000)
    if (work0.info.attempt !== 0) return yield* Effect.dieMessage(`first attempt is ${work0.info.attempt}`)
    // The claim the first engine holds while its activity runs: read before the kill, so the new process
    // cannot have touched it yet.
    const row = yield* Effect.orDie(target.get(taskKey))
    if (Option.isNone(row) || row.value.claimOwner !== ready.token || row.value.claimUntil === null) {
      return yield* Effect.dieMessage(`t1 is not claimed by the first engine: ${JSON.stringify(row)}`)
    }
    const deadClaim = { owner: row.value.claimOwner, epoch: row.value.claimEpoch, claimUntil: row.value.claimUntil }
    // SIGKILL inside the activity body, then a new process at once, with the default options
    const killedAt = performance.now()
    yield* first.kill
    const second = yield* spawnChild(`${target.dialect} second`, "livenessChild.ts", livenessConfig(target, "serve"))
    const booted = yield* second.expect("booted", 20_000)
    const starting = yield* second.expect("starting", 20_000)
    yield* second.expect("ready", 10_000)
    const work1 = yield* second.expect("work", 40_000)
    return {
      second,
      deadClaim,
      resumedAt: work1.info.at,
      attempt: work1.info.attempt,
      killToResumeMillis: work1.at - killedAt,
      bootMillis: booted.at - killedAt,
      journalOpenMillis: starting.at - booted.at,
      engineToResumeMillis: work1.at - starting.at
    }
  })
