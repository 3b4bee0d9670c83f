/**
 * What an activity's body can see about itself.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"

/**
 * The context of a running activity attempt.
 *
 * - `currentAttempt`: 0 on the first attempt, +1 for each retry or each run after a crash.
 * - `idempotencyKey`: a stable key for the activity within its execution, the same on every attempt,
 *   for outside systems that deduplicate requests (payment APIs, email senders). Its format is
 *   `<workflow>/<executionId>/<scope...>/<activityId>`, each part percent-encoded (`encodeURIComponent`).
 *   Activity ids may contain user data (the 2024 examples put card numbers in them): mind where you
 *   send the key.
 * - `persistenceId`: the 2024 name; equal to `idempotencyKey`.
 *
 * @since 0.1.0
 * @category tags
 */
export class ActivityContext extends Context.Tag("@effect-cluster/cluster-workflow/ActivityContext")<
  ActivityContext,
  {
    readonly persistenceId: string
    readonly idempotencyKey: string
    readonly currentAttempt: number
    readonly workflow: string
    readonly executionId: string
    readonly activityId: string
  }
>() {}
