/**
 * Durable timers at scale (in-memory journal, real clock):
 * - memory per suspended workflow with 100,000 workflows asleep (the engine holds none of them: no fiber,
 *   no runtime; what remains is the journal's rows);
 * - wake-up latency when 10,000 deadlines fall at the same instant (one engine timer, one due-query batch
 *   after another), measured from the deadline to each workflow's next step.
 *
 * Run: pnpm exec tsx --conditions=source bench/timers.ts  (also part of `pnpm bench`)
 */
import { Message } from "@effect-cluster/cluster"
import { Activity, DurableExecutionJournalInMemory, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { Clock, Effect, Schema } from "effect"

class Nap extends Message.TaggedMessage<Nap>()(
  "Nap",
  Schema.String,
  Schema.Number,
  { id: Schema.String, wakeAt: Schema.Number },
  (_) => _.id
) {}

const woke = new Map<string, number>()

const napper = Workflow.make(Nap, (nap) =>
  Effect.gen(function*() {
    const now = yield* Activity.make("now", Schema.Number, Schema.Never)(Clock.currentTimeMillis)
    yield* Workflow.sleep("nap", Math.max(0, nap.wakeAt - now))
    yield* Activity.make("woke", Schema.Void, Schema.Never)(
      Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void woke.set(nap.id, t)))
    )
    return 0
  }))

const gc = () => (globalThis as any).gc?.()

const waitUntil = (predicate: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    while (!(yield* predicate)) yield* Effect.sleep(20)
  })

const suspendedMemory = (n: number) =>
  Effect.gen(function*() {
    const engine = yield* WorkflowEngine.makeScoped(napper)
    gc()
    const before = process.memoryUsage()
    const wakeAt = Date.now() + 3_600_000
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => new Nap({ id: `m${i}`, wakeAt })),
      (nap) => engine.sendDiscard(nap),
      { concurrency: 256, discard: true }
    )
    yield* waitUntil(Effect.map(engine.liveExecutions, (live) => live === 0))
    const seconds = (performance.now() - started) / 1000
    gc()
    const after = process.memoryUsage()
    return {
      n,
      seconds,
      live: yield* engine.liveExecutions,
      heapPer: (after.heapUsed - before.heapUsed) / n,
      rssPer: (after.rss - before.rss) / n
    }
  }).pipe(Effect.provide(DurableExecutionJournalInMemory.layer), Effect.scoped)

const wakeLatency = (n: number) =>
  Effect.gen(function*() {
    woke.clear()
    const engine = yield* WorkflowEngine.makeScoped(napper)
    const deadline = Date.now() + 20_000
    yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => new Nap({ id: `w${i}`, wakeAt: deadline })),
      (nap) => engine.sendDiscard(nap),
      { concurrency: 256, discard: true }
    )
    yield* waitUntil(Effect.map(engine.liveExecutions, (live) => live === 0))
    const suspendedBy = Date.now()
    yield* waitUntil(Effect.sync(() => woke.size === n))
    const lateness = Array.from(woke.values(), (t) => t - deadline).sort((a, b) => a - b)
    const at = (q: number) => lateness[Math.min(lateness.length - 1, Math.floor(q * lateness.length))]!
    return { n, early: lateness.filter((l) => l < 0).length, p50: at(0.5), p99: at(0.99), max: lateness[lateness.length - 1]!, slack: deadline - suspendedBy }
  }).pipe(Effect.provide(DurableExecutionJournalInMemory.layer), Effect.scoped)

const main = Effect.gen(function*() {
  const memory = yield* suspendedMemory(100_000)
  const latency = yield* wakeLatency(10_000)
  console.log("In-memory journal, real clock.\n")
  console.log("| measurement | result |")
  console.log("|---|---|")
  console.log(`| workflows suspended in a timer | ${memory.n.toLocaleString("en-US")} (started and suspended in ${memory.seconds.toFixed(1)} s) |`)
  console.log(`| executions held by the engine once suspended | ${memory.live} |`)
  console.log(`| memory per suspended workflow (journal rows included) | ${Math.round(memory.heapPer)} B heap, ${Math.round(memory.rssPer)} B RSS |`)
  console.log(`| wake-up lateness, ${latency.n.toLocaleString("en-US")} deadlines at one instant | p50 ${latency.p50} ms, p99 ${latency.p99} ms, max ${latency.max} ms, ${latency.early} early |`)
  if (latency.slack < 0) console.log(`\n(the workflows suspended ${-latency.slack} ms after their deadline: lateness includes start-up)`)
})

Effect.runPromise(main)
