/**
 * SqlitePidNamespace.test.ts child: an engine's process in a PID namespace of its own (a container sharing
 * the host's name and a SQLite file): registers an engine "A" with its process liveness, starts execution wf/x1 claimed by A for
 * 10 minutes, prints "ready", and stays alive until its stdin closes.
 */
import { DurableExecutionJournal } from "@effect-cluster/cluster-workflow"
import * as Sqlite from "@effect-cluster/cluster-workflow/sqlite"
import { Clock, Effect } from "effect"

const { filename, prefix } = JSON.parse(process.env.PIDNS_CHILD!) as { filename: string; prefix: string }

const program = Effect.gen(function*() {
  const journal = yield* DurableExecutionJournal.DurableExecutionJournal
  yield* journal.registerEngine!("A", ["wf"])
  const now = yield* Clock.currentTimeMillis
  yield* journal.commit([{
    _tag: "Start",
    key: { workflow: "wf", executionId: "x1" },
    payload: "{}",
    payloadHash: "h",
    version: "v1",
    parent: null,
    owner: "A",
    claimUntil: now + 600_000,
    now
  }])
  process.stdout.write(`ready ${process.pid}\n`)
  yield* Effect.async<void>((resume) => {
    process.stdin.on("end", () => resume(Effect.void))
    process.stdin.resume()
  })
}).pipe(Effect.scoped, Effect.provide(Sqlite.layer({ filename, prefix })))

Effect.runPromise(program).then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
