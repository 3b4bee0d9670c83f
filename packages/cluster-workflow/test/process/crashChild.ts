/**
 * Child process of RealCrash.test.ts: one engine (a fixed identity, so a restarted child takes its
 * executions back at once) runs the chain workflow for one execution. The first run sends the message;
 * later runs only await the result (the engine resumes the execution at start-up, nobody re-sends it).
 *
 * Prints `result <chainId> {"exit": ...}` and exits 0, unless the parent kills it at a gate first.
 */
import { Effect, type Exit } from "effect"
import * as WorkflowEngine from "../../src/WorkflowEngine.js"
import { Chain, makeChain } from "./chain.js"
import { type ChildConfig, emit, encodeExit, gate, journalLayer, main, markEngineStart, readConfig } from "./child.js"

interface CrashConfig extends ChildConfig {
  readonly chainId: string
  readonly amount: number
  /** Whether this run sends the message (the first run) or only awaits its result. */
  readonly send: boolean
}

const config = readConfig<CrashConfig>()
const workflow = makeChain({ gate, prefix: config.prefix, run: config.run, identity: config.identity })

main(
  Effect.gen(function*() {
    yield* markEngineStart
    const engine = yield* WorkflowEngine.make(workflow, { identity: config.identity })
    const live = yield* engine.liveExecutions
    emit("engine", config.identity, { liveAfterStart: live })
    const exit = config.send
      ? yield* Effect.exit(engine.execute(new Chain({ chainId: config.chainId, amount: config.amount })))
      : yield* Effect.exit(Effect.flatten(engine.result(config.chainId)))
    emit("result", config.chainId, { exit: encodeExit(exit as Exit.Exit<unknown, unknown>) })
  }).pipe(Effect.scoped, Effect.provide(journalLayer(config)))
)
