// A 2024-style program that imports one module per path, as the 2024 packages allowed
// (`@effect/cluster/Message` -> `@effect-cluster/cluster/Message`, ...), run on the PUBLISHED packages by
// examples/test/consumer.test.ts.
import * as Message from "@effect-cluster/cluster/Message"
import * as MessageState from "@effect-cluster/cluster/MessageState"
import * as PodAddress from "@effect-cluster/cluster/PodAddress"
import * as ShardId from "@effect-cluster/cluster/ShardId"
import * as ShardingException from "@effect-cluster/cluster/ShardingException"
import * as CrashableRuntime from "@effect-cluster/cluster-workflow/CrashableRuntime"
import * as Activity from "@effect-cluster/cluster-workflow/Activity"
import * as DurableExecutionJournalInMemory from "@effect-cluster/cluster-workflow/DurableExecutionJournalInMemory"
import * as Workflow from "@effect-cluster/cluster-workflow/Workflow"
import * as WorkflowEngine from "@effect-cluster/cluster-workflow/WorkflowEngine"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

class Greet extends Message.TaggedMessage<Greet>()("Greet", Schema.Never, Schema.String, { name: Schema.String }, (_) => _.name) {}

const upper = (name: string) =>
  Activity.make(`upper-${name}`, Schema.String, Schema.Never)(Effect.sync(() => name.toUpperCase()))

const greetWorkflow = Workflow.make(Greet, (message) =>
  Effect.map(upper(message.name), (name) => `hello ${name}`)
)

const program = Effect.gen(function* () {
  const engine = yield* WorkflowEngine.makeScoped(greetWorkflow)
  return yield* engine.send(new Greet({ name: "world" }))
})

// 2024 programs catch errors by their 2024 tags; these lines stop compiling against the published
// declarations if a tag drifts.
const notRegistered = Effect.fail(
  new ShardingException.EntityTypeNotRegisteredException({ entityType: "Greet", podAddress: PodAddress.make("h", 1) })
).pipe(
  Effect.catchTag("EntityTypeNotRegisteredException", (error) => Effect.succeed(error._tag))
)
const crashed = CrashableRuntime.runWithCrash((crash) => crash).pipe(
  Effect.catchTag("@effect/cluster-workflow/CrashableRuntimeCrashedError", (error) => Effect.succeed(error._tag))
)
Effect.runPromise(Effect.all([notRegistered, crashed])).then((tags) => console.log(`2024 tags: ${tags.join(", ")}`))

Effect.runPromise(
  program.pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)
).then((greeting) => console.log(`greeting: ${greeting}`))

// The 2024 encoded forms (type-id keys), decoded back to the installed classes.
const shardId = Schema.encodeSync(ShardId.schema)(ShardId.make(7))
const state = Schema.encodeSync(MessageState.schema(Schema.Number))(MessageState.Acknowledged)
const back = Schema.decodeUnknownSync(ShardId.schema)({ "@effect/cluster/ShardId": "@effect/cluster/ShardId", value: 7 })
console.log(`encoded: ${JSON.stringify([shardId, state])} ${back instanceof ShardId.ShardId && back[ShardId.TypeId] === ShardId.TypeId}`)
