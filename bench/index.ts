/**
 * `pnpm bench`: the cluster benchmark (bench/cluster.ts), the network transport benchmark
 * (bench/network.ts), the failover time of real processes (bench/failover.ts), the workflow benchmark
 * (bench/workflow.ts), durable timers (bench/timers.ts), a workflow engine's restart after SIGKILL
 * (bench/restart.ts) and workflows on a cluster of processes against the in-process engine
 * (bench/clusterWorkflows.ts),
 * one after the other, each in its own child process; prints the machine and every table at the end.
 * Not part of `pnpm test`.
 */
import { spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))

/** Runs a bench script in a child process (same Node flags: tsx, source conditions); returns its stdout. */
const run = (script: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    console.error(`[bench] ${script} ...`)
    const child = spawn(process.execPath, [...process.execArgv, join(here, script)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk) => (out += chunk))
    child.on("error", reject)
    child.on("exit", (code) => {
      console.error(`[bench] ${script} done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
      if (code === 0) resolve(out)
      else reject(new Error(`${script} exited with ${code}:\n${out}`))
    })
  })

/** The markdown part of a script's output (its log lines go to stderr or precede the table). */
const tables = (out: string) => {
  const lines = out.split("\n")
  const first = lines.findIndex((line) => line.startsWith("|") || line.startsWith("Node ") || line.startsWith("3-activity"))
  return (first < 0 ? lines : lines.slice(first)).join("\n").trim()
}

const main = async () => {
  const { machine } = await import("./workflow.js")
  const cluster = await run("cluster.ts")
  const network = await run("network.ts")
  const failover = await run("failover.ts")
  const workflow = await run("workflow.ts")
  const timers = await run("timers.ts")
  const restart = await run("restart.ts")
  const clusterWorkflows = await run("clusterWorkflows.ts")
  console.log(`Machine: ${machine()}\n`)
  console.log("### Cluster\n")
  console.log(tables(cluster))
  console.log("\n### Network transport\n")
  console.log(tables(network))
  console.log("\n### Failover (real processes)\n")
  console.log(tables(failover))
  console.log("\n### Workflows\n")
  console.log(tables(workflow))
  console.log("\n### Durable timers\n")
  console.log(tables(timers))
  console.log("\n### Workflow restart after SIGKILL (real processes)\n")
  console.log(tables(restart))
  console.log("\n### Workflows on the cluster (real processes) against the in-process engine\n")
  console.log(tables(clusterWorkflows))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
