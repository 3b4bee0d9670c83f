/**
 * The demo (`pnpm start`, entry examples/demo/main.ts): workflows on a cluster of processes, one of them
 * killed half-way.
 *
 * - a shard manager (the package's `effect-cluster manager` command) and 3 pod processes
 *   (examples/demo/pod.ts), on SQLite files in a new temporary directory;
 * - this process, a client of the cluster (a `Sharding` that serves no shard), starts 1,000 ProcessPayment
 *   workflows (the seed's, examples/demo/payment.ts) through `ClusterWorkflowEngine`: each runs on the pod
 *   that owns its shard;
 * - once half of them have completed, one pod is killed with SIGKILL; after its lease ends, the manager
 *   gives its shards to the two others, which resume its unfinished workflows from the journal;
 * - the summary: every workflow completed, no activity ran twice but those cut off by the kill, how long the
 *   failover took.
 *
 * Options (environment): `DEMO_WORKFLOWS` (default 1000), `DEMO_VERBOSE=1` (print the children's output),
 * `DEMO_REPORT=<file>` (also write the summary as JSON there). Every process is started in this program's
 * scope: on exit, an error or Ctrl-C (SIGINT) or SIGTERM, the pods and the manager are stopped (SIGTERM,
 * then SIGKILL after 5 s) and the directory is removed.
 */
import { NodeCluster } from "@effect-cluster/cluster/node"
import { ClusterWorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqlClient from "@effect/sql/SqlClient"
import { Cause, Context, Duration, Effect, Exit, ExecutionStrategy, Fiber, Layer, Logger, LogLevel, Schedule, Scope } from "effect"
import { rmSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { join } from "node:path"
import {
  completedByPod,
  type Drop,
  firstCompletedOn,
  sample,
  type Sample,
  stragglers,
  unfinishedOf,
  verdict,
  whereAre
} from "./monitor.js"
import { createEffectsTable, journalPrefix, layerPaymentEffects, order, processPaymentWorkflow } from "./payment.js"
import { type Child, startChild } from "./processes.js"
import {
  busyRetries,
  leaseDuration,
  leaseMargin,
  leaseRenewalInterval,
  managerEnv,
  numberOfShards,
  podSharding
} from "./settings.js"

/** How many workflows (checked by main.ts). */
const count = Number(process.env.DEMO_WORKFLOWS ?? 1000)
const podNames = ["pod-1", "pod-2", "pod-3"]
const victim = "pod-2"
const seconds = (millis: number) => `${(millis / 1000).toFixed(1)} s`
/** Time since this process started. */
const elapsed = () => seconds(performance.now())
const say = (line: string) => Effect.sync(() => console.log(line))
const fmt = (n: number) => n.toLocaleString("en-US")
const leases = `a ${Duration.toSeconds(leaseDuration)} s lease renewed every ${Duration.toMillis(leaseRenewalInterval)} ms + ${
  Duration.toSeconds(leaseMargin)
} s margin`

/** A port nothing listens on now (the manager's: the pods must know it before it starts). */
const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Repeats `f` every `every` until it returns true; fails after `within` (live clock). */
const until = <R>(what: string, f: Effect.Effect<boolean, unknown, R>, every: Duration.DurationInput, within: Duration.DurationInput) =>
  f.pipe(
    Effect.repeat({ until: (done) => done, schedule: Schedule.spaced(every) }),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`${what}: not within ${Duration.format(within)}`) })
  )

/** The failover as the demo saw it (times in ms after the kill). */
interface Failover {
  /** Date.now() at the kill (the journal's clock). */
  readonly killedAt: number
  readonly shards: ReadonlyArray<number>
  /** The victim's executions unfinished at the kill. */
  readonly unfinished: ReadonlyArray<string>
  /** All its shards served by the other pods. */
  shardsMoved?: number
  /** The first workflow of its shards completed by another pod. */
  firstCompleted?: number
  /** All its unfinished executions claimed by another pod (or completed). */
  allResumed?: number
  /** All its unfinished executions completed. */
  allCompleted?: number
}

/** The shards each pod serves, as it last printed them. */
type Shards = Map<string, ReadonlyArray<number>>

/** How to run each of the demo's programs: the arguments of `node` before the program's own. */
export interface Programs {
  readonly pod: ReadonlyArray<string>
  readonly manager: ReadonlyArray<string>
}

const program = (dir: string, programs: Programs) => Effect.gen(function*() {
  yield* say(
    `effect-cluster demo: a shard manager and ${podNames.length} pods as processes on SQLite, ${fmt(count)} ProcessPayment ` +
      `workflows through ClusterWorkflowEngine; ${victim} is killed with SIGKILL half-way.`
  )
  yield* say(
    `Short leases for the demo: ${leases} (the defaults are a 30 s lease + 500 ms margin), so that a dead pod's ` +
      `shards move within seconds.`
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const journalFile = join(dir, "journal.db")
  const managerPort = yield* freePort
  const managerUri = `http://127.0.0.1:${managerPort}`
  const manager = yield* startChild(
    "manager",
    programs.manager,
    ["manager", "--port", String(managerPort)],
    { ...managerEnv, DATABASE_URL: join(dir, "manager.db") },
    /listening on/
  )
  yield* say(`[${elapsed()}] manager up (pid ${manager.pid}), files in ${dir}`)

  // This process: the journal (tables created here, before any pod starts) and a client of the cluster.
  const client = yield* Layer.build(
    layerPaymentEffects("client").pipe(
      Layer.provideMerge(Sqlite.layer({ filename: journalFile, prefix: journalPrefix, busyRetries })),
      Layer.provideMerge(NodeCluster.layerPod({
        sharding: { ...podSharding, shardingPort: 0, shardManagerUri: managerUri },
        transport: { host: "127.0.0.1" }
      }))
    )
  )
  const sql = Context.get(client, SqlClient.SqlClient)
  const read = <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) =>
    Effect.provideService(effect, SqlClient.SqlClient, sql)
  yield* read(createEffectsTable)
  const engine = yield* Effect.provide(
    ClusterWorkflowEngine.make(processPaymentWorkflow, { prefix: journalPrefix, identity: "demo-client" }),
    client
  )

  // The pods, in a scope of their own closed before the manager's: they leave while it can take their
  // shards back, all at once.
  const podsScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.parallel)
  const shards: Shards = new Map()
  const drops: Array<Drop> = []
  const pods = yield* Effect.forEach(podNames, (name) =>
    Effect.tap(
      startChild(name, programs.pod, [], { POD_NAME: name, SHARD_MANAGER_URI: managerUri, DEMO_JOURNAL: journalFile }, /^ready /),
      (child) =>
        Effect.sync(() =>
          child.onLine((line) => {
            const match = /^shards (\S+) ([\d,]*)$/.exec(line)
            if (match !== null) shards.set(match[1]!, match[2] === "" ? [] : match[2]!.split(",").map(Number))
            const dropped = /^dropped (\S+) (\d+) (.*)$/.exec(line)
            if (dropped !== null) {
              drops.push({ pod: dropped[1]!, at: Number(dropped[2]), reason: dropped[3]! })
              console.log(
                `[${elapsed()}] ** ${dropped[1]} ${dropped[3]} (a heartbeat not answered for seconds: the machine is too ` +
                  `busy); it stops their executions and takes them back with its lease`
              )
            }
          })
        )
    ).pipe(Scope.extend(podsScope)), { concurrency: "unbounded" })
  yield* until(
    "the manager spreads the shards over the three pods",
    Effect.sync(() =>
      podNames.every((name) => (shards.get(name)?.length ?? 0) > 0) &&
      sum(podNames.map((name) => shards.get(name)?.length ?? 0)) === numberOfShards
    ),
    "100 millis",
    "60 seconds"
  )
  yield* say(`[${elapsed()}] ${pods.map((pod) => `${pod.name} (pid ${pod.pid}) serves ${shards.get(pod.name)?.length} shards`).join(", ")}`)

  return yield* runWorkflows(pods, shards, drops, engine.start, read, dir, manager)
})

const sum = (values: Iterable<number>) => {
  let total = 0
  for (const value of values) total += value
  return total
}

/** Submits the workflows, follows them, kills the victim half-way, and prints the summary. */
const runWorkflows = (
  pods: ReadonlyArray<Child>,
  shards: Shards,
  drops: ReadonlyArray<Drop>,
  start: (message: ReturnType<typeof order>) => Effect.Effect<string, unknown>,
  read: <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) => Effect.Effect<A, unknown>,
  dir: string,
  manager: Child
) =>
  Effect.gen(function*() {
    const orderIds = Array.from({ length: count }, (_, i) => order(i + 1).orderId)
    let submitted = 0
    const submittedAt = performance.now()
    const submitter = yield* Effect.fork(Effect.forEach(
      orderIds,
      (_, i) =>
        start(order(i + 1)).pipe(
          // A start that meets a dead or moving owner fails as retryable: start again (the same order id
          // joins an execution already started).
          Effect.retry({
            schedule: Schedule.spaced("200 millis"),
            times: 300,
            while: (error) => (error as { readonly retryable?: unknown }).retryable === true
          }),
          Effect.tap(() => Effect.sync(() => submitted++))
        ),
      { concurrency: 32, discard: true }
    ))
    yield* say(`[${elapsed()}] submitting ${fmt(count)} workflows`)

    const victimPod = pods.find((pod) => pod.name === victim)!
    let failover: Failover | undefined
    let last: Sample | undefined
    let lastPrint = 0
    let printedAll = false
    const tick = Effect.gen(function*() {
      last = yield* read(sample)
      const completed = last.byStatus.get("completed") ?? 0
      if (failover === undefined && completed >= count / 2) {
        yield* victimPod.kill("SIGKILL")
        const killedAt = Date.now()
        const unfinished = yield* read(unfinishedOf(victim))
        failover = { killedAt, unfinished, shards: shards.get(victim) ?? [] }
        yield* say(
          `[${elapsed()}] ** SIGKILL ${victim} (pid ${victimPod.pid}) with ${fmt(completed)} of ${fmt(count)} completed: it leaves ${
            fmt(unfinished.length)
          } workflows unfinished and ${failover.shards.length} shards, which move once its lease has run out`
        )
      }
      if (failover !== undefined) yield* followFailover(failover, shards, read)
      // A failed (or cancelled) workflow ends the wait too: the summary reports it.
      const finished = completed + (last.byStatus.get("failed") ?? 0) + (last.byStatus.get("cancelled") ?? 0)
      if (performance.now() - lastPrint >= 1000 || (finished === count && !printedAll)) {
        lastPrint = performance.now()
        printedAll = finished === count
        yield* progress(last, submitted, pods, shards, read)
      }
      // After the kill, the run also lasts until the victim's shards have moved (all may be done before).
      return finished === count && (failover === undefined || failover.shardsMoved !== undefined)
    })
    yield* until(`all ${count} workflows completed`, tick, "100 millis", "150 seconds").pipe(
      Effect.tapError(() =>
        Effect.flatMap(read(stragglers), (rows) => say(`unfinished executions (first 10):\n${rows}`)).pipe(Effect.ignore)
      )
    )
    const finishedAt = performance.now()
    yield* Fiber.join(submitter)
    const killed = failover === undefined ? undefined : { pod: victim, at: failover.killedAt }
    const outcome = yield* read(verdict(orderIds, killed, drops))
    const perPod = yield* read(completedByPod)
    return yield* summary(outcome, perPod, failover, finishedAt - submittedAt, dir, [manager, ...pods])
  })

/** After the kill: when the victim's shards moved, and its workflows were taken over and completed elsewhere. */
const followFailover = (
  failover: Failover,
  shards: Shards,
  read: <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) => Effect.Effect<A, unknown>
) =>
  Effect.gen(function*() {
    const after = Date.now() - failover.killedAt
    if (failover.shardsMoved === undefined) {
      const others = new Set(podNames.filter((name) => name !== victim).flatMap((name) => shards.get(name) ?? []))
      if (failover.shards.every((shard) => others.has(shard))) {
        failover.shardsMoved = after
        yield* say(`[${elapsed()}] ** ${victim}'s ${failover.shards.length} shards now served by the other pods, ${seconds(after)} after the kill`)
      }
    }
    if (failover.firstCompleted === undefined) {
      const at = yield* read(firstCompletedOn(failover.shards, failover.killedAt))
      if (at !== undefined) {
        failover.firstCompleted = at - failover.killedAt
        yield* say(`[${elapsed()}] ** first workflow of ${victim}'s shards completed by another pod, ${seconds(failover.firstCompleted)} after the kill`)
      }
    }
    if (failover.allCompleted === undefined) {
      const now = yield* read(whereAre(failover.unfinished, victim))
      const total = failover.unfinished.length
      if (failover.allResumed === undefined && now.resumed === total) failover.allResumed = after
      if (now.completed === total) {
        failover.allCompleted = after
        if (total > 0) {
          yield* say(`[${elapsed()}] ** all ${fmt(total)} workflows ${victim} left unfinished completed on the other pods, ${seconds(after)} after the kill`)
        }
      }
    }
  })

/** One line of progress. */
const progress = (
  now: Sample,
  submitted: number,
  pods: ReadonlyArray<Child>,
  shards: Shards,
  read: <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) => Effect.Effect<A, unknown>
) =>
  Effect.gen(function*() {
    const done = yield* read(completedByPod)
    const completed = now.byStatus.get("completed") ?? 0
    const running = (now.byStatus.get("running") ?? 0) + (now.byStatus.get("suspended") ?? 0)
    const failed = (now.byStatus.get("failed") ?? 0) + (now.byStatus.get("cancelled") ?? 0)
    const perPod = pods.map((pod) => {
      const state = pod.exited ? "killed" : `${shards.get(pod.name)?.length ?? 0} shards`
      return `${pod.name} (${state}): ${pad(done.get(pod.name) ?? 0)} done ${pad(now.runningByPod.get(pod.name) ?? 0)} running`
    })
    yield* say(
      `[${elapsed().padStart(6)}] submitted ${pad(submitted)}  completed ${pad(completed)}  running ${pad(running)}${failed > 0 ? `  FAILED ${failed}` : ""} | ${perPod.join(" | ")}`
    )
  })

const pad = (n: number) => String(n).padStart(4)

/** The summary; fails (exit code 1) when a check failed. */
const summary = (
  outcome: Effect.Effect.Success<ReturnType<typeof verdict>>,
  perPod: ReadonlyMap<string, number>,
  failover: Failover | undefined,
  runMillis: number,
  dir: string,
  children: ReadonlyArray<Child>
) =>
  Effect.gen(function*() {
    const ok = outcome.completed === count && outcome.rightResult === count && outcome.problems.length === 0
    const lines = [
      ``,
      `Summary`,
      `  workflows:  ${fmt(count)} submitted, ${fmt(outcome.completed)} completed, ${fmt(outcome.rightResult)} with the right result (tracking code 1)`,
      `  by pod:     ${podNames.map((name) => `${name} ${fmt(perPod.get(name) ?? 0)}${name === victim ? " (killed)" : ""}`).join(", ")}`,
      `  activities: ${fmt(outcome.bodyRuns)} body runs for ${fmt(outcome.activities)} activities: each ran once, except`,
      outcome.cutOffByKill === 0
        ? `              none cut off by the kill of ${victim} (no body of its unfinished workflows had run yet)`
        : `              ${outcome.cutOffByKill} cut off by the kill of ${victim}, run again on another pod with the same idempotency key`,
      ...(outcome.cutOffByDrop === 0 ? [] : [
        `              ${outcome.cutOffByDrop} cut off when a pod dropped its shards (lease not renewed in time), run again with the same idempotency key`
      ]),
      outcome.problems.length === 0
        ? `              and no other activity ran twice`
        : `              and ${outcome.problems.length} PROBLEMS: ${outcome.problems.slice(0, 5).join("; ")}`,
      ...failoverLines(failover),
      `  time:       ${fmt(count)} workflows in ${seconds(runMillis)} (${(count / (runMillis / 1000)).toFixed(0)} workflows/s, kill and failover included); ${elapsed()} in all, start-up included`,
      ok ? `  result:     OK` : `  result:     FAILED`
    ]
    yield* say(lines.join("\n"))
    if (process.env.DEMO_REPORT !== undefined) {
      writeFileSync(process.env.DEMO_REPORT, JSON.stringify({
        ok,
        submitted: count,
        ...outcome,
        completedByPod: Object.fromEntries(perPod),
        failover: failover === undefined ? null : { ...failover, unfinished: failover.unfinished.length },
        runMillis,
        dir,
        pids: children.map((child) => child.pid)
      }, null, 2))
    }
    if (!ok) return yield* Effect.fail(new Error("the demo's checks failed (see the summary)"))
  })

/** The failover, in the summary. */
const failoverLines = (failover: Failover | undefined): ReadonlyArray<string> => {
  if (failover === undefined) return [`  failover:   no kill (the run ended before half of the workflows completed)`]
  const at = (millis: number | undefined) => millis === undefined ? "never" : `${seconds(millis)} after the kill`
  return [
    `  failover:   ${victim} killed (${Duration.toSeconds(leaseDuration)} s lease + ${Duration.toSeconds(leaseMargin)} s margin); its ${failover.shards.length} shards served by the others ${
      at(failover.shardsMoved)
    };`,
    `              first workflow of its shards completed by another pod ${at(failover.firstCompleted)};`,
    failover.unfinished.length === 0
      ? `              it left no workflow unfinished`
      : `              the ${fmt(failover.unfinished.length)} workflows it left unfinished all resumed ${at(failover.allResumed)}, all completed ${at(failover.allCompleted)}`
  ]
}

/** Runs the demo with its temporary directory (removed at the end) and its programs (see main.ts). */
export const run = (options: { readonly dir: string; readonly programs: Programs }): void =>
  // Warnings and errors only: the engines' informational logs would break the progress lines.
  NodeRuntime.runMain(Effect.scoped(program(options.dir, options.programs)).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)), {
  disableErrorReporting: false,
  teardown: (exit, onExit) => {
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
      console.log(`[${elapsed()}] interrupted: processes stopped, files removed`)
      return onExit(130)
    }
    onExit(Exit.isFailure(exit) ? 1 : 0)
  }
  })
