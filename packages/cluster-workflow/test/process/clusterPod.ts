/**
 * A pod process of the multi-process cluster test: the network transport (`NodeCluster.layerPod`), the SQL
 * journal, and the cluster workflow engine for a ProcessPayment-style workflow whose activities record
 * every run of their body (pod, attempt, idempotency key) in `<prefix>_effects`. Prints `ready <pod>`
 * once registered; with `submit`, starts those executions (retrying a start that meets a moving shard)
 * and prints `submitted <pod>`.
 */
import { Message, Sharding } from "@effect-cluster/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Schema } from "effect"
import * as Activity from "../../src/Activity.js"
import * as ActivityContext from "../../src/ActivityContext.js"
import * as ClusterWorkflowEngine from "../../src/ClusterWorkflowEngine.js"
import * as Workflow from "../../src/Workflow.js"
import { emit, readConfig } from "./child.js"
import { type PodConfig, runPod, startAll } from "./pod.js"

class Payment extends Message.TaggedMessage<Payment>()(
  "Payment",
  Schema.String,
  Schema.String,
  { id: Schema.String, amount: Schema.Number },
  (payment) => payment.id
) {}

const config = readConfig<PodConfig>()
const recorded = <A>(name: string, id: string, value: A, schema: Schema.Schema<A, any>) =>
  Activity.make(`${name}-${id}`, schema, Schema.String)(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const context = yield* ActivityContext.ActivityContext
      yield* Effect.orDie(sql`INSERT INTO ${sql(`${config.prefix}_effects`)} ${
        sql.insert({
          execution_id: id,
          activity: name,
          pod: config.pod,
          attempt: context.currentAttempt,
          idempotency_key: context.idempotencyKey
        })
      }`)
      return value
    })
  )

const workflow = Workflow.make(Payment, (payment) =>
  Effect.gen(function*() {
    const amount = yield* recorded("amount", payment.id, payment.amount, Schema.Number)
    yield* Workflow.sleep("settle", "300 millis")
    yield* recorded("charge", payment.id, undefined, Schema.Void)
    yield* Workflow.sleep("ship", "300 millis")
    const code = yield* recorded("ship", payment.id, amount * 10, Schema.Number)
    return `${payment.id}:${code}`
  }))

runPod(
  config,
  Effect.gen(function*() {
    const engine = yield* ClusterWorkflowEngine.make(workflow, { prefix: config.prefix, shardCheckInterval: "200 millis" })
    yield* Sharding.registerScoped
    emit("ready", String(config.pod))
    yield* startAll(config.submit, (id, i) => engine.start(new Payment({ id, amount: i })))
    emit("submitted", String(config.pod))
    return yield* Effect.never
  })
)
