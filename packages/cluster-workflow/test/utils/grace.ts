/**
 * Shared set-ups of the tests of a graceful shutdown with `shutdownGracePeriod` (ShutdownGrace*.test.ts):
 * an engine that closes while an activity runs, and the engine that resumes its execution afterwards.
 */
import type { Message } from "@effect-cluster/cluster"
import { DurableExecutionJournal, Workflow, WorkflowEngine } from "@effect-cluster/cluster-workflow"
import { expect } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Logger, LogLevel, Schema, Scope } from "effect"
import { awaitStatus, eventually } from "./engine.js"
import { clusterDatabases, makeEngineCluster, type PodName, served, until } from "./engineCluster.js"
import type { SqlClient } from "@effect/sql/SqlClient"
import { Order, recorded, type RunLog } from "./fixtures.js"

/** `charge` (its body waits for `gate`, when given) then `ship`; every run is recorded in `log`. */
export const chargeThenShip = (log: RunLog, gate: Deferred.Deferred<void> | undefined) =>
  Workflow.make(Order, (order) =>
    Effect.gen(function*() {
      const amount = yield* recorded(log, "charge", order.amount, Schema.Number, {
        body: gate === undefined ? Effect.void : Deferred.await(gate)
      })
      yield* recorded(log, "ship", undefined, Schema.Void)
      return amount
    }))

/** Collects the first part of every log message. */
export const collecting = () => {
  const logged: Array<string> = []
  const logger = Logger.make(({ message }) => void logged.push(String(Array.isArray(message) ? message[0] : message)))
  return { logged, logger }
}

/**
 * Engine A (identity "A", `options`) on `journal` starts o1 (amount 5) of `workflow`; once `started` holds
 * (its activities have begun), A's scope closes, and this returns when A waits for its activities (its
 * grace period's log line): the close, still running, and A's log lines.
 */
export const closingWhileRunning = <T extends Message.Message.Any>(
  journal: DurableExecutionJournal.Journal,
  workflow: Workflow.Workflow<T | Order, never>,
  started: () => boolean,
  options: WorkflowEngine.EngineOptions
) =>
  Effect.gen(function*() {
    const scopeA = yield* Scope.make()
    const { logged, logger } = collecting()
    // (A's close logs with the loggers A was made with)
    const a = yield* WorkflowEngine.make(workflow, { identity: "A", ...options }).pipe(
      Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal),
      Effect.provide(Logger.add(logger)),
      Scope.extend(scopeA)
    )
    yield* a.sendDiscard(new Order({ orderId: "o1", amount: 5 }))
    yield* eventually(started, "activities started")
    const closing = yield* Effect.fork(Scope.close(scopeA, Exit.void))
    yield* eventually(() => logged.some((line) => line.includes("letting the activities of 1 executions finish")), "grace")
    return { closing, logged }
  })

/** Engine B (identity "B", resuming on start) of `workflow` brings o1 to `status` on `journal`; its state. */
export const resumedByB = <T extends Message.Message.Any>(
  journal: DurableExecutionJournal.Journal,
  workflow: Workflow.Workflow<T, never>,
  status: WorkflowEngine.ExecutionState<any, any>["_tag"]
) =>
  Effect.gen(function*() {
    const b = yield* WorkflowEngine.make(workflow, { identity: "B" }).pipe(
      Effect.provideService(DurableExecutionJournal.DurableExecutionJournal, journal)
    )
    const done = yield* Effect.timeout(awaitStatus(b, "o1", status), "20 seconds")
    expect(done._tag).toBe(status)
    return done
  })

/**
 * An engine cluster on `database` (a 30 s grace period, shards checked only when they change) with pod 1
 * (staying) and pod 2 (leaving, its log lines collected in `logged`), once each serves half of its 30
 * shards, and two execution ids (`s<n>`) of `Shipment`s whose shards the leaving pod serves. With `debug`,
 * the leaving pod logs its debug lines too, to `logged` only.
 */
export const stayingAndLeaving = <T extends Message.Message.Any>(
  database: (typeof clusterDatabases)[number],
  workflow: Workflow.Workflow<T, PodName | SqlClient>,
  debug = false
) =>
  Effect.gen(function*() {
    const db = yield* database.make
    const { startPod } = yield* makeEngineCluster(db, workflow, {
      shardCheckInterval: "1 hour",
      shutdownGracePeriod: "30 seconds"
    })
    const { logged, logger } = collecting()
    const staying = yield* startPod(1)
    const leaving = yield* startPod(2).pipe(
      Effect.provide(
        debug
          ? Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.Debug))
          : Logger.add(logger)
      )
    )
    yield* until(Effect.map(Effect.forEach([staying, leaving], served), (all) => all.every((shards) => shards.length === 15)))
    const leavingShards = new Set(yield* served(leaving))
    const ids: Array<string> = []
    for (let n = 0; ids.length < 2; n++) {
      if (leavingShards.has(leaving.sharding.getShardId(`Shipment/s${n}`).value)) ids.push(`s${n}`)
    }
    return { staying, leaving, logged, id: ids[0]!, otherId: ids[1]! }
  })
