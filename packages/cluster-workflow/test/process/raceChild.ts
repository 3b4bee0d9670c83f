/**
 * Child process of TwoProcess.test.ts: prints `ready`, waits for the parent's `start`, builds an engine
 * (resuming unfinished executions at start-up), starts (or joins) every execution of its configuration,
 * prints `started`, then awaits every result and prints `result <chainId> {...}` for each, then `done`.
 *
 * A caller that gets an engine error (e.g. a `JournalError` when SQLite stays busy) prints
 * `caller-error <chainId> {...}` and awaits the result again (`engine.result`), a bounded number of times.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as WorkflowEngine from "../../src/WorkflowEngine.js"
import { Chain, makeChain } from "./chain.js"
import {
  awaitCommand,
  type ChildConfig,
  emit,
  encodeExit,
  gate,
  journalLayer,
  main,
  markEngineStart,
  readConfig
} from "./child.js"

interface RaceConfig extends ChildConfig {
  readonly executions: ReadonlyArray<{ readonly chainId: string; readonly amount: number }>
  readonly claimLease: number
  readonly orphanCheckInterval: number
  readonly resultPollInterval: number
}

const config = readConfig<RaceConfig>()
const workflow = makeChain({ gate, prefix: config.prefix, run: config.run, identity: config.identity })

const describeError = (error: unknown) => ({
  tag: (error as { _tag?: unknown } | null)?._tag ?? "unknown",
  message: (error as { message?: unknown } | null)?.message ?? String(error),
  retryable: (error as { retryable?: unknown } | null)?.retryable
})

main(
  Effect.gen(function*() {
    emit("ready", config.identity)
    yield* awaitCommand
    yield* markEngineStart
    // Engine faults (a JournalError after SQLite stayed busy) are reported, and the step retried.
    const reported = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      effect.pipe(
        Effect.tapError((error) => Effect.sync(() => emit("caller-error", what, describeError(error)))),
        Effect.retry({ times: 10 })
      )
    const engine = yield* reported(
      "engine",
      WorkflowEngine.make(workflow, {
        identity: config.identity,
        claimLease: config.claimLease,
        orphanCheckInterval: config.orphanCheckInterval,
        resultPollInterval: config.resultPollInterval
      })
    )
    emit("engine", config.identity, { liveAfterStart: yield* engine.liveExecutions })
    const messages = config.executions.map((e) => new Chain({ chainId: e.chainId, amount: e.amount }))
    // One start after the other (each its own commit), so that two processes sending the same executions
    // in opposite orders each create some and join the others.
    yield* Effect.forEach(messages, (message) => reported(message.chainId, engine.start(message)), { discard: true })
    emit("started", config.identity)
    yield* Effect.forEach(messages, (message) =>
      Effect.gen(function*() {
        let exit: Exit.Exit<unknown, unknown> = yield* Effect.exit(engine.execute(message))
        // The chain never fails on its own: a typed failure is an engine error; await the result again.
        for (let i = 0; i < 10 && Exit.isFailure(exit) && Option.isSome(Cause.failureOption(exit.cause)); i++) {
          emit("caller-error", message.chainId, describeError(Cause.squash(exit.cause)))
          exit = yield* Effect.exit(Effect.flatten(engine.result(message.chainId)))
        }
        emit("result", message.chainId, { exit: encodeExit(exit) })
      }), { concurrency: "unbounded", discard: true })
    emit("done", config.identity)
  }).pipe(Effect.scoped, Effect.provide(journalLayer(config)))
)
