/**
 * Memory benchmark (in-memory journal, real clock): `pnpm bench:memory` (needs `node --expose-gc`, which the
 * script passes). Prints a markdown table. Not part of `pnpm bench`: the 1,000,000 workflows take minutes.
 *
 * - Finished workflows leave nothing behind: 1,000,000 3-activity workflows (`engine.send`, 64 at a time,
 *   activities built once) with retention on (`engine.deleteCompleted` after every 100,000 workflows, which
 *   deletes every finished execution); heap after a full GC sampled every 100,000 workflows. A flat column
 *   is the target; `liveExecutions` must be 0 at every sample.
 * - A suspended workflow's cost: N workflows suspended on a one-hour durable sleep; heap after GC with the
 *   engine running, then once more after the engine's scope is closed (the journal, built outside that
 *   scope, is kept). The difference is what the engine holds for the suspended workflows; the rest over the
 *   heap before the run is the journal's rows.
 *
 * Options (environment): MEMORY_WORKFLOWS (default 1,000,000), MEMORY_SAMPLE (100,000), MEMORY_SUSPENDED
 * (100,000), MEMORY_CONCURRENCY (64).
 */
import { Message } from "@effect-cluster/cluster"
import {
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Effect, Schema } from "effect"
import { Bench, benchWorkflow, step1, step2 } from "./threeSteps.js"

const total = Number(process.env.MEMORY_WORKFLOWS ?? 1_000_000)
const sampleEvery = Number(process.env.MEMORY_SAMPLE ?? 100_000)
const suspendedCount = Number(process.env.MEMORY_SUSPENDED ?? 100_000)
const concurrency = Number(process.env.MEMORY_CONCURRENCY ?? 64)

class Nap extends Message.TaggedMessage<Nap>()(
  "Nap",
  Schema.Never,
  Schema.Number,
  { id: Schema.String },
  (_) => _.id
) {}

const napWorkflow = Workflow.make(Nap, () =>
  Effect.gen(function*() {
    yield* step1
    yield* Workflow.sleep("nap", "1 hour")
    return yield* step2
  }))

const heapAfterGc = () => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with node --expose-gc (pnpm bench:memory does)")
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

interface Sample {
  readonly workflows: number
  readonly heap: number
  readonly live: number
  readonly deleted: number
  readonly seconds: number
}

/** 1,000,000 workflows with retention; heap after GC every `sampleEvery` workflows. */
const finished = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(benchWorkflow)
  const samples: Array<Sample> = []
  const started = performance.now()
  let next = 0
  let done = 0
  const worker = (end: number) =>
    Effect.gen(function*() {
      while (next < end) {
        const n = next++
        const result = yield* engine.send(new Bench({ id: `job-${n}`, n }))
        if (result !== n + 6) return yield* Effect.dieMessage(`wrong result ${result}`)
        done++
      }
    })
  samples.push({ workflows: 0, heap: heapAfterGc(), live: 0, deleted: 0, seconds: 0 })
  while (done < total) {
    const end = Math.min(total, done + sampleEvery)
    yield* Effect.forEach(Array.from({ length: concurrency }), () => worker(end), {
      concurrency: "unbounded",
      discard: true
    })
    const deleted = yield* engine.deleteCompleted(0)
    samples.push({
      workflows: done,
      heap: heapAfterGc(),
      live: yield* engine.liveExecutions,
      deleted,
      seconds: (performance.now() - started) / 1000
    })
    console.error(`[memory] ${fmt(done)} workflows, heap ${mb(samples[samples.length - 1]!.heap)} MB`)
  }
  return samples
}).pipe(Effect.scoped, Effect.provide(DurableExecutionJournalInMemory.layer))

/** Heap per suspended workflow: engine running, then engine closed with the journal kept. */
const suspended = Effect.gen(function*() {
  const journal = yield* DurableExecutionJournalInMemory.make
  const before = heapAfterGc()
  const started = performance.now()
  const withEngine = yield* Effect.gen(function*() {
    const engine = yield* WorkflowEngine.makeScoped(napWorkflow)
    yield* Effect.forEach(
      Array.from({ length: suspendedCount }, (_, i) => i),
      (i) => engine.sendDiscard(new Nap({ id: `nap-${i}` })),
      { concurrency: 256, discard: true }
    )
    while ((yield* engine.liveExecutions) > 0) yield* Effect.sleep("20 millis")
    return { heap: heapAfterGc(), live: yield* engine.liveExecutions }
  }).pipe(Effect.scoped, Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal))
  const seconds = (performance.now() - started) / 1000
  const journalOnly = heapAfterGc()
  const suspendedRows = (yield* journal.list({ workflows: ["Nap"], status: "suspended", limit: suspendedCount + 1 }))
    .length
  return {
    n: suspendedCount,
    suspendedRows,
    seconds,
    live: withEngine.live,
    total: (withEngine.heap - before) / suspendedCount,
    engine: (withEngine.heap - journalOnly) / suspendedCount,
    journal: (journalOnly - before) / suspendedCount
  }
})

const main = Effect.gen(function*() {
  const samples = yield* finished
  const sleep = yield* suspended
  const base = samples[0]!.heap
  const last = samples[samples.length - 1]!
  console.log(
    `Finished workflows, retention on: ${fmt(total)} 3-activity workflows (\`engine.send\`, ${concurrency} at a time, in-memory journal), \`deleteCompleted\` and a full GC every ${
      fmt(sampleEvery)
    }.\n`
  )
  console.log("| workflows | heap after GC | vs start | executions held by the engine | deleted | elapsed |")
  console.log("|---:|---:|---:|---:|---:|---:|")
  for (const s of samples) {
    console.log(
      `| ${fmt(s.workflows)} | ${mb(s.heap)} MB | ${s.heap >= base ? "+" : ""}${mb(s.heap - base)} MB | ${s.live} | ${
        fmt(s.deleted)
      } | ${s.seconds.toFixed(0)} s |`
    )
  }
  console.log(
    `\nThroughput over the run: ${fmt(last.workflows / last.seconds)} workflows/s (${
      fmt(3 * last.workflows / last.seconds)
    } activities/s).\n`
  )
  console.log(
    `Suspended workflows: ${fmt(sleep.n)} on a one-hour durable sleep (started and suspended in ${
      sleep.seconds.toFixed(1)
    } s; ${fmt(sleep.suspendedRows)} suspended rows; ${sleep.live} executions held by the engine).\n`
  )
  console.log("| heap per suspended workflow | bytes |")
  console.log("|---|---:|")
  console.log(`| engine (running engine minus the same heap once the engine is closed) | ${fmt(sleep.engine)} |`)
  console.log(`| journal rows (in-memory journal) | ${fmt(sleep.journal)} |`)
  console.log(`| total | ${fmt(sleep.total)} |`)
})

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exit(1)
})
