/**
 * A pod process of the chaos test (ClusterChaos.test.ts): the network transport, the SQL journal (SQLite
 * file or PostgreSQL) and the cluster workflow engine for `ChaosPayment` (chaosWorkflow.ts). Prints
 * `ready <pod> {"address"}` once registered (the address is what the shard fences record as the pod).
 *
 * The submitter (with `submit`) then starts those payments and prints `submitted`; on the command
 * `signal <part>` (stdin) it signals the approval of every signal-waiting payment whose index is
 * `part` modulo 2, through its own engine, and prints `signalled <part>`.
 */
import { Sharding } from "@effect-cluster/cluster"
import { Effect, Exit, Schedule } from "effect"
import * as ClusterWorkflowEngine from "../../src/ClusterWorkflowEngine.js"
import { awaitCommand, emit, readConfig } from "./child.js"
import { Approval, approverOf, chaosWorkflow, indexOf, kindOf, paymentOf } from "./chaosWorkflow.js"
import { type PodConfig, runPod, startAll } from "./pod.js"

const config = readConfig<PodConfig>()
const workflow = chaosWorkflow({ prefix: config.prefix, dialect: config.dialect, incarnation: `pod-${config.pod}#${config.run}` })

runPod(
  config,
  Effect.gen(function*() {
    const engine = yield* ClusterWorkflowEngine.make(workflow, { prefix: config.prefix, shardCheckInterval: "200 millis" })
    const sharding = yield* Sharding.Sharding
    yield* Sharding.registerScoped
    emit("ready", String(config.pod), { address: `${sharding.podAddress.host}:${sharding.podAddress.port}` })
    if (config.submit.length === 0) return yield* Effect.never
    yield* startAll(config.submit, (id) => engine.start(paymentOf(indexOf(id))))
    emit("submitted", String(config.pod))
    const waiting = config.submit.map(indexOf).filter((i) => kindOf(i) === "signal")
    while (true) {
      const part = Number((yield* awaitCommand).split(" ")[1])
      const batch = waiting.filter((_, n) => n % 2 === part)
      yield* Effect.forEach(
        batch,
        (i) =>
          engine.signal(paymentOf(i).id, Approval, Exit.succeed(approverOf(i))).pipe(
            Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.intersect(Schedule.recurs(150))))
          ),
        { concurrency: 10, discard: true }
      )
      emit("signalled", String(part), { count: batch.length })
    }
  })
)
