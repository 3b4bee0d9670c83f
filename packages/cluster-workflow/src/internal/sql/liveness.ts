/**
 * How a SQLite journal tells whether an engine's process is gone (one machine, several processes).
 *
 * @internal
 */
import * as Context from "effect/Context"

/**
 * This process's identity on its machine, and a check of another process's. Provided by
 * `@effect-cluster/cluster-workflow/sqlite` (Node); without it a SQLite journal falls back to claim
 * expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessLiveness {
  readonly host: string
  readonly pid: number
  /** When the process started (Linux: `/proc/<pid>/stat` start time), so a reused pid is not taken for it. */
  readonly startTime: string | null
  /** true: alive; false: certainly gone; undefined: cannot tell (another host). */
  readonly isAlive: (host: string, pid: number, startTime: string | null) => boolean | undefined
}

/**
 * The `ProcessLiveness` service.
 *
 * @since 0.1.0
 * @category tags
 */
export class ProcessLivenessService extends Context.Tag("@effect-cluster/cluster-workflow/ProcessLiveness")<
  ProcessLivenessService,
  ProcessLiveness
>() {}
