import { Effect } from "effect"
// 64 fibers; each "send" suspends in Effect.async; a driver resumes queued senders in batches on setImmediate
const queue: Array<(e: Effect.Effect<number>) => void> = []
let scheduled = false
const drive = () => {
  scheduled = false
  const batch = queue.splice(0, queue.length)
  for (const resume of batch) resume(Effect.succeed(1))
}
const send = Effect.async<number>((resume) => {
  queue.push(resume)
  if (!scheduled) { scheduled = true; setImmediate(drive) }
})
const count = 400_000
const per = count / 64
const program = Effect.forEach(Array.from({ length: 64 }, (_, i) => i), () => Effect.gen(function*() {
  for (let i = 0; i < per; i++) {
    const t = performance.now()
    yield* send
    performance.now() - t
  }
}), { concurrency: "unbounded", discard: true })
const c0 = process.cpuUsage(); const t0 = performance.now()
Effect.runPromise(program).then(() => {
  const s = (performance.now() - t0) / 1000; const c = process.cpuUsage(c0)
  console.log("sends/s", Math.round(count / s), "cpu us/send", ((c.user + c.system) / count).toFixed(2))
})
