/**
 * The child of the TLS test: a manager and two pods in this process, every server TLS (`https` options
 * from the PEM files at TLS_KEY and TLS_CERT) and every client on `wss://` (`tls: true`), as
 * docs/deployment.md describes. The parent decides whether the certificate is trusted, through Node's
 * NODE_EXTRA_CA_CERTS.
 *
 * Prints `routed <json>` once each pod has sent to an entity on the other pod and had its reply, or
 * `refused <log line>` when a pod could not reach the manager (the line that says why).
 */
import { Sharding } from "@effect-cluster/cluster"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { Counter, counterBehaviour, freshId, GetCount, Increment } from "../utils/counter.js"
import { balanced, captureLogs, entityOn, eventuallyLive, startManager, startPod } from "../utils/network.js"

const numberOfShards = 6
const https = { key: readFileSync(process.env.TLS_KEY!), cert: readFileSync(process.env.TLS_CERT!) }
const transport = { tls: true }
const logs = captureLogs()

const program = Effect.gen(function*() {
  const manager = yield* startManager({ manager: { numberOfShards }, transport, https })
  const pod = () =>
    startPod({
      managerUri: manager.uri,
      sharding: { numberOfShards },
      transport,
      https,
      setup: Sharding.registerEntity(Counter)(counterBehaviour())
    })
  const a = yield* pod()
  const refusal = () => logs.lines.find((line) => line.includes("could not register"))
  yield* eventuallyLive(
    Effect.map(a.sharding.getAssignedShardIds, (shards) => Array.from(shards).length > 0 || refusal() !== undefined)
  )
  const refused = refusal()
  if (refused !== undefined) return `refused ${refused}`
  const b = yield* pod()
  yield* balanced([a, b], numberOfShards)
  const onA = yield* entityOn(a, Counter.name, "a")
  const onB = yield* entityOn(b, Counter.name, "b")
  const fromB = yield* b.sharding.messenger(Counter).send(onA)(new Increment({ messageId: freshId(), by: 2 }))
  const fromA = yield* a.sharding.messenger(Counter).send(onB)(new Increment({ messageId: freshId(), by: 3 }))
  const count = yield* a.sharding.messenger(Counter).send(onA)(new GetCount({ messageId: freshId() }))
  return `routed ${JSON.stringify({ manager: manager.uri, fromB, fromA, count })}`
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(logs.layer))).then(
  (line) => {
    console.log(line)
    process.exit(0)
  },
  (error) => {
    console.log(`failed ${String(error)}`)
    process.exit(1)
  }
)
