/**
 * The counter example: an entity type with Increment / GetCount messages, spread over three in-process pods
 * and a shard manager. Half-way, one pod leaves gracefully and a new one joins; every message still gets
 * its reply, from wherever its entity lives now. Prints which pod served which entity before and after.
 *
 *   pnpm exec tsx --conditions=source examples/counter.ts
 */
import {
  InProcessTransport,
  Message,
  MessageState,
  RecipientBehaviour,
  RecipientType,
  Sharding,
  type ShardManager,
  ShardManager as ShardManagerModule,
  Storage
} from "@effect-cluster/cluster"
import { Context, Effect, Exit, Layer, Ref, Schema, Scope } from "effect"

// --- The entity contract: each message says what it answers (success schema) and carries a primary key.
class Increment extends Message.TaggedMessage<Increment>()(
  "Increment",
  Schema.Never,
  Schema.Number,
  { requestId: Schema.String },
  (_) => _.requestId
) {}

class Served extends Schema.Class<Served>("Served")({ count: Schema.Number, pod: Schema.String }) {}

class GetCount extends Message.TaggedMessage<GetCount>()(
  "GetCount",
  Schema.Never,
  Served,
  { requestId: Schema.String },
  (_) => _.requestId
) {}

const Counter = RecipientType.makeEntityType("Counter", Schema.Union(Increment, GetCount))

// --- The behaviour: in-memory state per entity; replies name the pod that served them.
const counterOn = (podName: string) =>
  Sharding.registerEntity(Counter)(
    RecipientBehaviour.fromFunctionEffectStateful(
      () => Effect.succeed(0),
      (_entityId, message, count) =>
        message._tag === "Increment"
          ? Effect.map(Ref.updateAndGet(count, (n) => n + 1), (n) => MessageState.Processed(Exit.succeed(n)))
          : Effect.map(Ref.get(count), (n) => MessageState.Processed(Exit.succeed(new Served({ count: n, pod: podName }))))
    )
  )

export interface Row {
  readonly entity: string
  readonly before: Served
  readonly after: Served
}

let requests = 0
const requestId = () => `req-${requests++}`

/** Runs the scenario and returns one row per entity. */
export const main: Effect.Effect<ReadonlyArray<Row>> = Effect.scoped(Effect.gen(function*() {
  const outer = yield* Effect.scope
  const shared = yield* Layer.build(Layer.merge(InProcessTransport.layer({ serialize: true }), Storage.memory))

  // The shard manager (rebalanceRate 1 so a joining pod gets its share in one round).
  const managerContext = yield* Layer.build(
    InProcessTransport.layerManager({ rebalanceRate: 1 }).pipe(Layer.provide(Layer.succeedContext(shared)))
  )
  const manager: ShardManager.ShardManager = Context.get(managerContext, ShardManagerModule.ShardManager)

  const startPod = (port: number) =>
    Effect.gen(function*() {
      const scope = yield* Scope.fork(outer, undefined as never)
      const context = yield* Layer.buildWithScope(
        InProcessTransport.layerPod({ shardingPort: port }).pipe(Layer.provide(Layer.succeedContext(shared))),
        scope
      )
      const sharding = Context.get(context, Sharding.Sharding)
      yield* Effect.provide(counterOn(`pod-${port}`), context)
      yield* sharding.register
      return { port, sharding, scope }
    })

  const balanced = (ports: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      for (let i = 0; i < 100; i++) {
        const table = yield* manager.getShardAssignments
        const counts = ports.map((port) => table.filter((row) => row.pod?.port === port).length)
        if (table.every((row) => row.pod !== null && ports.includes(row.pod.port)) && Math.max(...counts) - Math.min(...counts) <= 1) return
        yield* Effect.sleep("50 millis")
      }
    })

  const pods = [yield* startPod(1), yield* startPod(2), yield* startPod(3)]
  yield* balanced([1, 2, 3])

  const entities = Array.from({ length: 8 }, (_, i) => `counter-${i}`)
  const client = pods[0]!.sharding.messenger(Counter)
  const round = Effect.forEach(entities, (entity) =>
    Effect.gen(function*() {
      yield* client.send(entity)(new Increment({ requestId: requestId() }))
      yield* client.send(entity)(new Increment({ requestId: requestId() }))
      return yield* client.send(entity)(new GetCount({ requestId: requestId() }))
    }), { concurrency: 4 })

  const before = yield* round
  yield* Effect.log("pod-2 leaves gracefully; pod-4 joins")
  const leaving = pods[1]!
  yield* leaving.sharding.unregister
  yield* Scope.close(leaving.scope, Exit.void)
  yield* startPod(4)
  yield* balanced([1, 3, 4])
  const after = yield* round

  return entities.map((entity, i) => ({ entity, before: before[i]!, after: after[i]! }))
}).pipe(Effect.orDie))

/** Formats the rows as the table the example prints. */
export const format = (rows: ReadonlyArray<Row>): string =>
  [
    "| entity    | before: pod (count) | after: pod (count) |",
    "|-----------|---------------------|--------------------|",
    ...rows.map((row) =>
      `| ${row.entity.padEnd(9)} | ${`${row.before.pod} (${row.before.count})`.padEnd(19)} | ${
        `${row.after.pod} (${row.after.count})`.padEnd(18)
      } |`
    ),
    "",
    "An entity that stayed on its pod kept counting (2 -> 4); one whose shard moved restarted on its new",
    "pod (2), since this example keeps state in memory only."
  ].join("\n")

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) {
  Effect.runPromise(main).then((rows) => console.log(format(rows)))
}
