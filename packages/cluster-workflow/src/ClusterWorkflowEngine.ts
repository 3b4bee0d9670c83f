/**
 * The workflow engine on the cluster: each execution is one entity of `@effect-cluster/cluster`, so it runs
 * on the pod that owns the entity's shard, on a SQL journal every pod shares. The engine has the same
 * interface as the in-process one (`WorkflowEngine`), and `layer` makes `WorkflowEngine.makeScoped` /
 * `make` build it, so a program moves to the cluster by changing a layer. See docs/workflows-on-cluster.md.
 *
 * @since 0.1.0
 */
import type { Message, ShardingException } from "@effect-cluster/cluster"
import { MessageState, RecipientBehaviour, Sharding } from "@effect-cluster/cluster"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ExecutionKey, Journal } from "./DurableExecutionJournal.js"
import { DurableExecutionJournal, isTerminal, JournalError } from "./DurableExecutionJournal.js"
import type { FencedJournal } from "./internal/cluster/fencedJournal.js"
import { ShardFollow } from "./internal/cluster/shardFollow.js"
import * as Fenced from "./internal/cluster/fencedJournal.js"
import type { ExecutionMessage } from "./internal/cluster/protocol.js"
import { AwaitExecution, entityTypeOf, StartExecution, WakeExecution, waiterEntityId } from "./internal/cluster/protocol.js"
import * as internal from "./internal/engine.js"
import type { ExecutionRuntime } from "./internal/execution.js"
import { EngineProvider } from "./internal/engineProvider.js"
import { shardMoved } from "./internal/engineLaunch.js"
import * as Ownership from "./internal/engineOwnership.js"
import { stuckFault } from "./internal/faults.js"
import { liveClock } from "./internal/liveClock.js"
import type { RemoteAnswer, RemoteWait } from "./internal/results.js"
import { keyString } from "./internal/results.js"
import { resendingStart } from "./internal/cluster/resend.js"
import { claimOrRetryLater } from "./internal/lockedClaims.js"
import { defaultPrefix, tableNames } from "./internal/sql/tables.js"
import type { Workflow } from "./Workflow.js"
import type { EngineOptions, EngineRoutes, WorkflowEngine } from "./WorkflowEngine.js"
import { serviceOf } from "./WorkflowEngine.js"
import { EncodeError, ExecutionNotFoundError, isWorkflowEngineError } from "./WorkflowError.js"

/**
 * Options of the cluster engine.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClusterEngineOptions extends Omit<EngineOptions, "resumeOnStart" | "orphanCheckInterval"> {
  /** The table prefix of the SQL journal every pod shares (as given to it). Default `"effect_workflow"`. */
  readonly prefix?: string
  /**
   * A pod compares the shards it serves with those it has taken over (to resume a new shard's executions,
   * and to stop those of a shard it lost) at once when its shards change, and also this often, for what no
   * change announces (runs to drop). Default 1 second. A lapse of the pod's lease (its shards unserved for
   * a moment, not announced) is followed without it: see docs/workflows-on-cluster.md.
   */
  readonly shardCheckInterval?: Duration.DurationInput
}

/** A routing failure, as the journal errors the engine's API returns (the request was not answered). */
const routingError = (operation: string) => (error: ShardingException.ShardingException) =>
  new JournalError({ operation, message: `could not reach the execution's owner pod: ${error._tag}`, retryable: true })

/**
 * The owner's side: starts and wake-ups of the executions of the entity, and (on waiter entities, see
 * `AwaitExecution`) callers' waits for a result, bounded by `maxAwaitMillis`.
 */
const behaviour = (engine: internal.Engine, fenced: FencedJournal) =>
  RecipientBehaviour.fromFunctionEffect((_entityId: string, message: ExecutionMessage) => {
    const handled: Effect.Effect<unknown, unknown> = message._tag === "StartExecution"
      ? ownerStart(engine, message)
      : message._tag === "WakeExecution"
      ? ownerWake(engine, fenced, message)
      : engine.results.awaitHere(message, Math.min(Math.max(0, message.waitMillis), maxAwaitMillis))
    return Effect.map(Effect.exit(handled), (exit) => MessageState.Processed(exit as any))
  })

/**
 * How long an owner holds one caller's wait for a result before answering `Pending`: well within a
 * cross-pod send's timeout (the transport's `sendTimeout`, 5 s by default), so a wait is never taken for a
 * lost message. A caller asks again after `Pending`, reading the journal in between.
 */
const awaitMillis = 1_000
/** The most an owner holds a wait, whatever a caller asks. */
const maxAwaitMillis = 4_000
/** How much longer than `awaitMillis` a caller gives an answer to come before it reads the journal. */
const callerMarginMillis = 1_000

/**
 * The caller's side of pushed results: asks the execution's owner, through a waiter entity in the
 * execution's shard (never the execution's own entity: its mailbox handles one message at a time, and a
 * held wait would delay its starts and wake-ups). Each concurrent wait of this engine on a shard takes a
 * waiter of its own (`slot`), returned afterwards. Any failure (routing, a pod of a release without
 * `AwaitExecution`, the owner stopping) is `NotHere`: the caller reads the journal.
 */
const remoteWaits = (
  fenced: FencedJournal,
  caller: string,
  send: (entityId: string, message: ExecutionMessage) => Effect.Effect<unknown, unknown>
): RemoteWait => {
  const free = new Map<number, Array<string>>()
  const slots = new Map<number, number>()
  let requests = 0
  const take = (shard: number): string | undefined => {
    const id = free.get(shard)?.pop()
    if (id !== undefined) return id
    const slot = slots.get(shard) ?? 0
    slots.set(shard, slot + 1)
    return waiterEntityId(caller, slot, shard, fenced.view.shardOf)
  }
  const give = (shard: number, id: string) => {
    const list = free.get(shard)
    if (list === undefined) free.set(shard, [id])
    else list.push(id)
  }
  return (key) =>
    Effect.flatMap(Effect.either(fenced.placementOf(key)), (placement): Effect.Effect<RemoteAnswer> => {
      if (Either.isLeft(placement)) return Effect.succeed(notHere)
      const shard = placement.right.shard
      const waiter = take(shard)
      if (waiter === undefined) return Effect.succeed(notHere)
      const message = new AwaitExecution({
        workflow: key.workflow,
        executionId: key.executionId,
        waitMillis: awaitMillis,
        requestId: `${caller}/${(requests++).toString(36)}`
      })
      // The caller bounds the wait too: a send to a pod that died or froze would be retried for the
      // messenger's whole `sendRetryTimeout` (10 s by default) while the execution may have finished on
      // its next owner. A waiter whose wait did not end in an answer is not used again (the owner may
      // still hold it).
      return send(waiter, message).pipe(
        Effect.map((reply) => reply as RemoteAnswer),
        Effect.timeoutTo({
          duration: awaitMillis + callerMarginMillis,
          onTimeout: () => undefined,
          onSuccess: (answer): RemoteAnswer | undefined => answer
        }),
        Effect.withClock(liveClock),
        Effect.either,
        Effect.map((answer) => {
          if (Either.isLeft(answer) || answer.right === undefined) return notHere
          give(shard, waiter)
          return answer.right
        })
      )
    })
}

const notHere: RemoteAnswer = { _tag: "NotHere" }

const ownerStart = (engine: internal.Engine, message: StartExecution) =>
  Effect.gen(function*() {
    if (engine.results.closedError !== undefined) {
      // The engine stops (for as long as its `shutdownGracePeriod`) while the pod still holds the shard:
      // refused as by a moved shard's fence, so the caller sends the start again, to the shard's next owner,
      // rather than failing with this engine's closing.
      yield* Effect.logDebug("the engine stops: it refuses a start; the caller sends it to the shard's next owner")
      return yield* shardMoved()
    }
    const definition = yield* engine.definitionOf(message.workflow)
    const key = { workflow: message.workflow, executionId: message.executionId }
    const decoded = Either.flatMap(
      Either.try(() => JSON.parse(message.payload) as unknown),
      (json) => Either.mapLeft(definition.decodePayload(json), ParseResult.TreeFormatter.formatIssueSync)
    )
    if (Either.isLeft(decoded)) {
      return yield* new EncodeError({ ...key, step: "the start message", reason: String(decoded.left) })
    }
    return yield* engine.start(definition, key, decoded.right, null)
  })

const ownerWake = (engine: internal.Engine, fenced: FencedJournal, message: WakeExecution) =>
  Effect.gen(function*() {
    const key = { workflow: message.workflow, executionId: message.executionId }
    const runtime = engine.live.get(keyString(key))
    if (runtime !== undefined && !runtime.suspending) {
      if (message.reason === "inbox") runtime.notifyInbox()
      else if (message.reason === "cancel") runtime.notifyCancel()
      return
    }
    const row = yield* fenced.inner.get(key)
    if (Option.isNone(row) || isTerminal(row.value.status)) return
    // This pod owns the execution's shard: it takes the execution over, whoever claimed it before (a row
    // locked by another transaction: claimed again in the background).
    yield* Effect.catchTag(claimOrRetryLater(engine, key), "PayloadDecodeError", () => Effect.void)
  }).pipe(Effect.catchAll((error) => Effect.logWarning("could not wake an execution", error)))

/** The caller's side: starts go to the owner; signals, cancellations and resumes are stored, then woken. */
const routes = (
  engine: internal.Engine,
  fenced: FencedJournal,
  send: (entityId: string, message: ExecutionMessage) => Effect.Effect<unknown, unknown>,
  graceMillis: number
): EngineRoutes => {
  const journal: Journal = fenced.inner
  // The change is stored before the wake is sent, and the caller's acknowledgement does not wait for the
  // wake: an owner that is down gets it from its successor's takeover (which resumes the shard's waiting
  // executions) rather than from a caller blocked on routing retries.
  const wake = (key: ExecutionKey, reason: WakeExecution["reason"], version: number) =>
    Effect.sync(() => {
      engine.runFork(
        Effect.flatMap(fenced.placementOf(key), ({ entityId }) =>
          send(entityId, new WakeExecution({ ...key, reason, version }))).pipe(
            Effect.asVoid,
            Effect.catchAll((error) => Effect.logWarning("could not wake an execution's owner", error))
          )
      )
    })
  return {
    start: (definition, key, message) =>
      Effect.gen(function*() {
        const encoded = definition.encodePayload(message)
        if (Either.isLeft(encoded)) {
          return yield* new EncodeError({
            ...key,
            step: "the start message",
            reason: ParseResult.TreeFormatter.formatIssueSync(encoded.left)
          })
        }
        const { entityId } = yield* fenced.placementOf(key)
        // Each start call is its own request (the cluster's reply cache must not answer another payload, or
        // a start after a deletion, with an earlier start's reply: the journal decides, as in process); its
        // retries keep the id. A start is idempotent (same id, same payload: joined): one refused by the
        // fence of a pod its shard has just left is sent again, to the new owner.
        const requestId = `${Date.now().toString(36)}-${(yield* Random.nextInt).toString(36)}`
        const reply = yield* resendingStart(
          send(entityId, new StartExecution({ ...key, payload: JSON.stringify(encoded.right), requestId })),
          graceMillis
        ).pipe(Effect.catchAll((error) =>
          isWorkflowEngineError(error) ? Effect.fail(error) : Effect.fail(routingError("start")(error as any))
        ))
        return reply as internal.StartResult
      }),
    signal: (row, name, value) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const result = yield* journal.signal(row, name, value, now)
        if (result === undefined) return yield* new ExecutionNotFoundError({ executionId: row.executionId })
        yield* wake(row, "inbox", result.row.inboxVersion)
        return { stored: result.stored }
      }),
    cancel: (executionId) =>
      Effect.gen(function*() {
        const found = yield* engine.find(executionId)
        const row = yield* journal.requestCancel(found, yield* Clock.currentTimeMillis)
        if (row === undefined) return yield* new ExecutionNotFoundError({ executionId })
        if (isTerminal(row.status)) return "already-finished" as const
        yield* wake(row, "cancel", row.inboxVersion)
        return "cancelled" as const
      }),
    resume: (executionId) =>
      Effect.gen(function*() {
        const found = yield* engine.find(executionId)
        const row = yield* journal.resume(found, yield* Clock.currentTimeMillis)
        if (row === undefined) return yield* new ExecutionNotFoundError({ executionId })
        yield* wake(row, "resume", row.updatedAt)
      })
  }
}

/**
 * Stops the executions of `shards` running here (recording nothing) and waits until they have left. On a
 * hand-off (the pod still holds the shards' fences until this returns) with a grace period, the activities
 * in flight first finish and their results commit (at most `graceMillis`, and within the pod's
 * `entityTerminationTimeout`, which bounds this hook); no activity starts meanwhile. Otherwise, or past the
 * grace, an activity in flight is cut off and runs again on the new owner (same idempotency key): logged,
 * since a hand-off between live pods is then one more cause of a second run, beside a crash.
 */
const stopShards = (
  engine: internal.Engine,
  fenced: FencedJournal,
  shards: ReadonlyArray<number>,
  kind: Sharding.ShardStopKind,
  graceMillis: number
) =>
  Effect.suspend(() => {
    const lost = new Set(shards)
    const leaving: Array<ExecutionRuntime> = []
    for (const runtime of engine.live.values()) {
      const run = fenced.runs.get(runtime.keyString)
      if (run !== undefined && lost.has(run.shard)) leaving.push(runtime)
    }
    if (leaving.length === 0) return Effect.void
    const cutOff = Effect.sync(() => {
      for (const runtime of leaving) runtime.notifyClaimLost()
    })
    const left = Effect.all(leaving.map((runtime) => runtime.done.await), { concurrency: "unbounded", discard: true })
    // The pod bounds this hook by its entityTerminationTimeout, then confirms the release: an execution that
    // has not left by then (an activity body slow to stop once cut off, a grace period not under that
    // timeout) may still run here while the shard's next owner runs it. Said, since nothing else shows it.
    const bounded = <A, E, R>(stop: Effect.Effect<A, E, R>) =>
      Effect.onInterrupt(stop, () =>
        Effect.suspend(() => {
          const still = leaving.filter((runtime) => runtime.done.unsafePoll === undefined).length
          return still === 0 ? Effect.void : Effect.logWarning(
            `the stop of shards this pod gives up ended (its entityTerminationTimeout) while ${still} of their ` +
              `executions had not left: the pod confirms the release, and an activity of theirs still running ` +
              `here may run beside its next run on the shard's new owner`
          )
        }))
    // (with a grace period an idle execution is drained too: its drain waits for its results still queued,
    // which would be refused once the pod's stop of the shard returned, and its step would run again on the
    // new owner)
    if (kind === "lost" || graceMillis <= 0) {
      return Effect.zipRight(
        Effect.logWarning(
          `stopping ${leaving.length} executions of shards this pod hands off; an activity in flight runs again on the new owner`
        ),
        bounded(Effect.zipRight(cutOff, left))
      )
    }
    // (the pod's entityTerminationTimeout, which bounds this hook, may end the drain first. The results commit
    // while the pod's stop of the shards runs, `Sharding.releasingShardEpochs`, whatever this hook does: two
    // stops of one shard may overlap, and the first to end must not refuse the other's results)
    const drain = internal.drainWithin(leaving, graceMillis, {
      starting: "handing off shards: letting the activities of",
      period: "the hand-off's grace period",
      after: "on the shard's new owner"
    })
    return bounded(Effect.zipRight(Effect.ensuring(drain, cutOff), left))
  })

/** What the engine follows of its pod (`Sharding`): the shards it holds, and announcements of their changes. */
interface PodShards {
  /** The shards the pod holds (served or not: a lease that ran out by the pod's clock is not served). */
  readonly held: Effect.Effect<ReadonlySet<number>>
  readonly changes: Stream.Stream<unknown>
}

/**
 * How often (live clock) the engine looks at the pod's shards while a lapse lasts (see `ShardFollow`): it
 * ends at the pod's next lease renewal, or its watchdog drops the shard (announced).
 */
const lapseCheckMillis = 100

/**
 * Claims (and runs here) an execution of a shard this pod serves; an undecodable one is left as it is
 * (false: its start message no longer decodes). A row locked by another transaction is claimed again in the
 * background (`claimOrRetryLater`): it does not fail the takeover, sweep or stale look it is part of (the
 * executions after it were not resumed).
 */
const resumeHere = (engine: internal.Engine, key: ExecutionKey) =>
  claimOrRetryLater(engine, key).pipe(
    Effect.as(true),
    Effect.catchTag("PayloadDecodeError", () => Effect.succeed(false))
  )

/**
 * Suspended executions of the taken shards whose inbox changed after they suspended (a wake that crossed
 * their suspension, was lost with its sender, or was refused during a lapse): resumed here, as the
 * in-process engine's periodic repair does.
 */
const resumeStale = (engine: internal.Engine, fenced: FencedJournal, taken: ReadonlyMap<number, number>) =>
  Effect.gen(function*() {
    const stale = fenced.inner.staleSuspensions
    if (stale === undefined) return
    for (const key of yield* stale(engine.names, 500)) {
      const { shard } = yield* fenced.placementOf(key)
      if (taken.has(shard)) yield* resumeHere(engine, key)
    }
  })

/**
 * Takes a served shard over: raises its fence and resumes its unfinished executions. `again`: the shard
 * was taken before at this epoch and is served again after a lapse: only its running executions that do
 * not run here (stopped by a write refused during the lapse) are resumed here; its timers and stale
 * suspensions are the caller's (the timer is armed, stale suspensions resumed).
 */
const takeShard = (
  engine: internal.Engine,
  fenced: FencedJournal,
  follow: ShardFollow,
  shard: number,
  epoch: number,
  again: boolean
) =>
  Effect.gen(function*() {
    if (!(yield* fenced.raiseFence(shard, epoch))) return
    follow.taken.set(shard, epoch)
    for (const execution of yield* fenced.shardExecutions(shard, engine.names)) {
      // Timers are the engine timer's (it reads the served shards' deadlines); a stuck execution waits
      // for code that can carry it on.
      if (execution.status === "suspended" && (again || execution.wakeAt !== null || stuckFault(execution.suspendedOn))) {
        continue
      }
      yield* resumeHere(engine, execution)
    }
  }).pipe(Effect.catchAll((error) => Effect.logWarning("could not take over a shard's executions", error)))

/**
 * Executions that left this engine (finished, suspended, stopped). One still running in the journal while
 * its shard is still served at its epoch was stopped here (a write refused by a momentary lapse of the pod's
 * lease, a claim whose renewal did not answer before its lease ended) and is taken back, every round until
 * it runs here again: its other ways back are single tries (a lease end's take-back, a lapse's end), and a
 * claim can be refused meanwhile (the row locked by another transaction, a previous owner's claim met
 * between the clearing and the claim). One whose start message no longer decodes is dropped at once (its
 * claim failed to launch it, and made it `running` again). The other runs are dropped after a whole round.
 * Returns the runs seen idle this round.
 */
const takeBackIdle = (
  engine: internal.Engine,
  fenced: FencedJournal,
  taken: ReadonlyMap<number, number>,
  idle: ReadonlySet<string>
) =>
  Effect.gen(function*() {
    const next = new Set<string>()
    for (const [id, run] of fenced.runs) {
      // (one whose row another transaction locks is claimed by its background retries meanwhile: not probed
      // again here, about 155 ms on PostgreSQL, at every round)
      if (engine.live.has(id) || engine.lockedClaims.has(id)) continue
      if (idle.has(id)) {
        fenced.runs.delete(id)
        continue
      }
      const [workflow, executionId] = JSON.parse(id) as [string, string]
      const row = yield* fenced.inner.get({ workflow, executionId })
      if (Option.isSome(row) && row.value.status === "running" && taken.get(run.shard) === run.epoch) {
        // (not marked idle: looked at again next round unless it runs here by then. One whose start message
        // no longer decodes is left as it is: its run is dropped, or every round would claim it again, its
        // claim making it `running`, and log it)
        if (!(yield* resumeHere(engine, row.value))) fenced.runs.delete(id)
      } else {
        next.add(id)
      }
    }
    return next
  })

/**
 * Stops here the executions of a shard no longer served at the epoch they run under. With a grace period,
 * a shard that left the pod is left to the shard stop hook (`stopShards`), which every departure of a
 * shard calls and which lets a hand-off's activities in flight finish first (stopped here, they would run
 * again on the new owner); one served again at another epoch is stopped here.
 */
const leaveShard = (
  engine: internal.Engine,
  fenced: FencedJournal,
  shard: number,
  epoch: number,
  graceMillis: number,
  servedAgain: boolean
) => {
  fenced.forgetShard(shard)
  if (graceMillis > 0 && !servedAgain) return
  for (const runtime of engine.live.values()) {
    const run = fenced.runs.get(runtime.keyString)
    if (run !== undefined && run.shard === shard && run.epoch === epoch) runtime.notifyClaimLost()
  }
}

/**
 * Follows the pod's shards: a shard taken (or taken again at a new epoch) has its fence raised and its
 * unfinished executions resumed; a shard lost has its executions stopped here (without recording anything).
 * A shard in a lapse (held, not served: see `ShardFollow`) is neither: the engine looks again every
 * `lapseCheckMillis` until it is served again, then resumes what the lapse stopped or left waiting.
 */
const watchShards = (
  engine: internal.Engine,
  fenced: FencedJournal,
  follow: ShardFollow,
  pod: PodShards,
  every: Duration.Duration,
  graceMillis: number
): Effect.Effect<never, never, Scope.Scope> => {
  const taken = follow.taken
  let idle = new Set<string>()
  /** Follows the served shards; `sweep`: also the runs that left this engine (a periodic round only). */
  const round = (sweep: boolean) => Effect.gen(function*() {
    const now = yield* follow.served
    const held = yield* pod.held
    for (const [shard, epoch] of taken) {
      if (now.get(shard) === epoch || follow.inLapse(shard, now, held)) continue
      taken.delete(shard)
      leaveShard(engine, fenced, shard, epoch, graceMillis, now.has(shard))
    }
    follow.forgetDropped(held)
    let gained = false
    let lapseEnded = false
    for (const [shard, epoch] of now) {
      const { again, take } = follow.toTake(shard, epoch)
      if (!take) continue
      yield* takeShard(engine, fenced, follow, shard, epoch, again)
      gained = true
      lapseEnded ||= again
    }
    if (gained) engine.arm(Number.NEGATIVE_INFINITY)
    if (sweep) idle = yield* takeBackIdle(engine, fenced, taken, idle)
    if (sweep || lapseEnded) yield* resumeStale(engine, fenced, taken)
  }).pipe(Effect.catchAll((error) => Effect.logWarning("could not follow the pod's shards", error)))
  // A round at each change of the pod's shards (a pod leaving changes them too: that round reads nothing),
  // every `lapseCheckMillis` while a lapse lasts, and every `every` with the sweep (what no change
  // announces: runs to drop or take back).
  return Effect.gen(function*() {
    yield* Effect.forkScoped(Stream.runForEach(pod.changes, () => follow.changed.offer(undefined)))
    let sweep = true
    while (true) {
      yield* round(sweep)
      const waits = [Effect.as(Effect.sleep(every), true), Effect.as(Queue.take(follow.changed), false)]
      if (follow.lapsed.size > 0) {
        waits.push(Effect.as(Effect.withClock(Effect.sleep(lapseCheckMillis), liveClock), false))
      }
      sweep = yield* Effect.raceAll(waits)
    }
  })
}

/**
 * Builds the cluster engine for a workflow (use `Workflow.union` for several) on this pod's `Sharding` and
 * the shared SQL journal. On a pod (registered with the shard manager) it runs the executions of the
 * shards it serves; elsewhere (a client: `Sharding` not registered) it only starts, signals, cancels and
 * awaits them. Closing the scope stops the executions running here without recording anything.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends Message.Message.Any, R>(
  workflow: Workflow<T, R>,
  options?: ClusterEngineOptions
): Effect.Effect<
  WorkflowEngine<T>,
  JournalError,
  R | Scope.Scope | Sharding.Sharding | DurableExecutionJournal
> =>
  Effect.gen(function*() {
    const sharding = yield* Sharding.Sharding
    const journal = yield* DurableExecutionJournal
    if (journal.sql === undefined) return yield* Fenced.noSqlClient
    const client = journal.sql.client as SqlClient.SqlClient
    const prefix = options?.prefix ?? defaultPrefix
    const tables = yield* tableNames(prefix)
    yield* Fenced.createTables(client.withoutTransforms(), prefix)
    const pod = `${sharding.podAddress.host}:${sharding.podAddress.port}`
    const follow = new ShardFollow(sharding.servedShardEpochs)
    const held = Effect.map(sharding.getAssignedShardIds, (shards) => new Set(Array.from(shards, (shard) => shard.value)))
    const fenced = new Fenced.FencedJournal(journal, client, prefix, tables.executions, {
      served: follow.served,
      held,
      releasing: sharding.releasingShardEpochs,
      shardOf: (entityId) => sharding.getShardId(entityId).value,
      pod
    })
    const context = yield* Effect.context<R>()
    const engine = yield* internal.make(fenced.journal, workflow.definitions, context as any, {
      ...options,
      identity: options?.identity ?? `pod-${pod}`,
      resumeOnStart: false,
      // the shard's owner resumes its executions (watchShards), not whoever sees another engine die
      ownership: Ownership.shard,
      // (registered below, after what follows the pod's shards)
      closesItself: false
    })
    const entityType = entityTypeOf(engine.names)
    yield* sharding.registerEntity(entityType)(behaviour(engine, fenced))
    // A shard this pod gives up: its executions stop here before the pod confirms the release, so the
    // shard's next owner never resumes them while they still run on this pod.
    const graceMillis = Duration.toMillis(Duration.decode(options?.shutdownGracePeriod ?? 0))
    yield* sharding.registerShardStop((shards, kind) => stopShards(engine, fenced, shards, kind, graceMillis))
    const messenger = sharding.messenger(entityType)
    const send = (entityId: string, message: ExecutionMessage) => messenger.send(entityId)(message as any)
    yield* Effect.forkScoped(watchShards(
      engine,
      fenced,
      follow,
      { held, changes: sharding.servedShardEpochsChanges },
      Duration.decode(options?.shardCheckInterval ?? "1 second"),
      graceMillis
    ))
    // (one name per engine: two clients may share an address, e.g. port 0)
    const caller = `${pod}/${(yield* Random.nextInt).toString(36)}`
    engine.results.remoteWait = remoteWaits(fenced, caller, send as any)
    // Registered last, so run first when the scope closes: during the grace period the engine still follows
    // the pod's shards, and an execution whose shard leaves the pod (a rebalance, its lease lost) stops at
    // once, its activity cut off, before the shard's next owner runs it.
    yield* Effect.addFinalizer(() => internal.closeGracefully(engine))
    return serviceOf<T>(engine, routes(engine, fenced, send as any, graceMillis))
  })

/**
 * Makes `WorkflowEngine.make` and `WorkflowEngine.makeScoped` build the cluster engine on the `Sharding`
 * and the SQL `DurableExecutionJournal` of this layer's context: the 2024 program runs on the cluster with
 * no other change.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: ClusterEngineOptions
): Layer.Layer<EngineProvider, never, Sharding.Sharding | DurableExecutionJournal> =>
  Layer.effect(
    EngineProvider,
    Effect.map(Effect.context<Sharding.Sharding | DurableExecutionJournal>(), (context) => ({
      make: (workflow, engineOptions) =>
        Effect.provide(
          make(workflow, { ...options, ...engineOptions } as ClusterEngineOptions),
          context
        ) as any
    }))
  )
