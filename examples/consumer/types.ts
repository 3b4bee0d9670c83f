// Type assertions a consumer of the PUBLISHED packages relies on (examples/test/consumer.test.ts copies this
// file into an app that installs the packed tarballs, and type-checks it with `skipLibCheck: false`).
//
// The `@ts-expect-error` lines are the point: each must be an error. If a declaration degrades to `any`
// (as with the old bundled `.d.ts`, whose flattened namespaces were silently `any` under `skipLibCheck`),
// the line compiles, the directive is unused, and tsc fails with TS2578.
import { Message } from "@effect-cluster/cluster"
import * as MessageModule from "@effect-cluster/cluster/Message"
import * as ShardId from "@effect-cluster/cluster/ShardId"
import { Activity, DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import * as SubpathWorkflow from "@effect-cluster/cluster-workflow/Workflow"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { Layer } from "effect"
import { Effect, Schema } from "effect"

type IsAny<T> = 0 extends 1 & T ? true : false
const notAny = <T>(_: IsAny<T> extends false ? T : never): void => undefined

class Count extends Message.TaggedMessage<Count>()("Count", Schema.String, Schema.Number, { id: Schema.String }, (_) => _.id) {}

// A workflow's body must return its message's success type.
// @ts-expect-error a body returning a string for a number message
Workflow.make(Count, () => Effect.succeed("not a number"))
// @ts-expect-error the same through the subpath module
SubpathWorkflow.make(Count, () => Effect.succeed("not a number"))

const countWorkflow = Workflow.make(Count, (message) => Effect.succeed(message.id.length))
notAny(countWorkflow)
notAny(Workflow.make)

// Activities keep their schemas' types.
// @ts-expect-error an activity declared as Number cannot produce a string
Activity.make("a", Schema.Number, Schema.String)(Effect.succeed("x"))
const activity = Activity.make("b", Schema.Number, Schema.String)(Effect.succeed(1))
notAny(activity)

export const program = Effect.gen(function* () {
  const engine = yield* WorkflowEngine.makeScoped(countWorkflow)
  notAny(engine)
  // @ts-expect-error the result of a number workflow is not a string
  const s: string = yield* engine.send(new Count({ id: "a" }))
  const n: number = yield* engine.send(new Count({ id: "b" }))
  // @ts-expect-error a message of another type is not accepted
  yield* engine.send({ _tag: "Other", id: "c" })
  const a: number = yield* activity
  return [s, n, a] as const
})

// Subpath modules carry the same types as the root namespaces.
const shard: ShardId.ShardId = ShardId.make(3)
notAny(shard)
// @ts-expect-error a shard id is made from a number
ShardId.make("3")
export const sameModule: typeof Message = MessageModule

// SQL users: the 2024 journal layer needs exactly `@effect/sql`'s SqlClient.
const journal = DurableExecutionJournal.layer({ table: "journal" })
export const journalLayer: Layer.Layer<DurableExecutionJournal.DurableExecutionJournal, DurableExecutionJournal.JournalError, SqlClient.SqlClient> = journal
// @ts-expect-error the layer does not build without a SqlClient
export const noClient: Layer.Layer<DurableExecutionJournal.DurableExecutionJournal, DurableExecutionJournal.JournalError, never> = journal
