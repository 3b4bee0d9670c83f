/**
 * The inbox: signals (durable deferreds) and child workflows, whose results reach the parent through its
 * inbox under a reserved name. A waiting step holds the execution only until the coordinator suspends it.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { ExitCodec } from "./codec.js"
import { OneShot } from "./oneShot.js"
import type { Step } from "./replay.js"
import { safeScope } from "./replay.js"
import { Timers } from "./timers.js"

/** The inbox name under which a child's result reaches its parent (text only: it is stored in SQL). @internal */
export const childSignalName = (scope: string, id: string) => "~child/" + JSON.stringify([scope, id])

/** @internal */
export abstract class Inbox extends Timers {
  protected get reloadInbox(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const row = yield* Effect.either(this.engine.journal.get(this.key))
      const signals = yield* Effect.either(this.engine.journal.signals(this.key))
      if (Either.isLeft(row) || Either.isLeft(signals)) return
      if (Option.isSome(row.right)) {
        this.inboxVersion = Math.max(this.inboxVersion, row.right.value.inboxVersion)
        if (row.right.value.cancelRequested) this.cancelPending = true
      }
      for (const signal of signals.right) this.receiveSignal(signal.name, signal.value)
      if (this.cancelPending && this.phase === "live" && this.liveStarted && !this.stopping) {
        yield* this.beginCancel(false)
      }
    })
  }

  protected receiveSignal(name: string, value: string) {
    if (!this.signals.has(name)) this.signals.set(name, value)
    const stored = this.signals.get(name)!
    for (const step of this.waiting) {
      if (step.signalName === name && step.signalWaiter !== undefined) {
        step.signalWaiter.unsafeSucceed(stored)
      }
    }
  }

  /** Waits for a signal (durable: the execution may suspend meanwhile). */
  protected waitSignal(step: Step, name: string, reason: string): Effect.Effect<string> {
    const stored = this.signals.get(name)
    if (stored !== undefined) return Effect.succeed(stored)
    return Effect.suspend(() => {
      const waiter = new OneShot<string>()
      step.signalName = name
      step.signalWaiter = waiter
      step.waitingOn = reason
      this.waiting.add(step)
      this.control.unsafeOffer({ _tag: "CheckSuspend" })
      return waiter.await.pipe(
        Effect.ensuring(Effect.sync(() => {
          this.waiting.delete(step)
          step.signalWaiter = undefined
          step.waitingOn = undefined
        }))
      )
    })
  }

  /**
   * A step completed by a value arriving in the inbox under the step's signal name (a signal, or a child's
   * result): records its start, runs `beforeWait` once (e.g. starting the child), waits (durably: the
   * execution may suspend meanwhile) and records the value as the step's result.
   */
  protected inboxStep(
    kind: "signal" | "child",
    scope: string,
    ids: { readonly id: string; readonly legacyId?: string },
    signalNameOf: (stepId: string) => string,
    reason: string,
    beforeWait: (signalName: string) => Effect.Effect<void>
  ): Effect.Effect<{ readonly step: Step; readonly json: string }> {
    return Effect.gen(this, function*() {
      const { first, step } = yield* this.request(kind, scope, ids.id, ids.legacyId)
      if (!first) {
        const json = yield* step.done.await
        // (abandoned by its first requester: ask again)
        if (json === undefined) return yield* this.inboxStep(kind, scope, ids, signalNameOf, reason, beforeWait)
        return { step, json }
      }
      const id = step.id
      const signalName = signalNameOf(id)
      const gate = yield* this.awaitGate(step)
      if (gate._tag === "Done") return { step, json: gate.json }
      const json = yield* Effect.gen(this, function*() {
        if (step.startedBody === undefined) {
          // (a wait asked for again after an abandonment is its next attempt)
          step.startedBody = "{}"
          step.attempt++
          this.pipeline(
            [this.event("StepStarted", kind, scope, id, step.attempt, "{}")],
            undefined,
            yield* Clock.currentTimeMillis
          )
        }
        if (!this.signals.has(signalName)) yield* beforeWait(signalName)
        const value = yield* this.waitSignal(step, signalName, reason)
        this.recordCompletion(step, step.attempt, value, yield* Clock.currentTimeMillis)
        return value
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => this.abandon(step))))
      return { step, json }
    })
  }

  /** Waits for a signal (a durable deferred) by name. */
  awaitSignal<A, E>(scope: string, name: string, codec: ExitCodec<A, E>): Effect.Effect<A, E> {
    return Effect.flatMap(
      this.inboxStep("signal", scope, { id: name }, () => name, "signal:" + name, () => Effect.void),
      ({ json, step }) => this.decode(step, codec, json)
    )
  }

  /**
   * Starts a child workflow (once) and waits for its result. The child's workflow type is part of the
   * step's identity (`<type>:<childId>`), so children of two types with one id are two steps; a step
   * recorded by earlier releases under the bare child id still replays.
   */
  child<A, E>(scope: string, id: string, message: unknown, codec: ExitCodec<A, E>): Effect.Effect<A, E> {
    const tag = (message as { readonly _tag?: unknown } | undefined)?._tag
    const ids = { id: `${String(tag)}:${id}`, legacyId: id }
    const startChild = (signalName: string) => Effect.suspend(() => {
      // (a graceful shutdown starts nothing: the engine refuses starts once it closes, which would stop the
      // execution with its last results maybe uncommitted; the child is started where the execution
      // resumes, its start recorded)
      if (this.draining) return Effect.never
      this.active++
      const childId = [this.key.executionId, ...safeScope(scope), id].map(encodeURIComponent).join("/")
      return this.engine.startChild(this.key, signalName, childId, message).pipe(
        Effect.matchEffect({
          // an engine fault (the journal stayed down, the child's message does not decode...) stops or
          // sticks the parent: it never reaches the body as the child's outcome
          onFailure: (fault) => this.fatal(fault),
          onSuccess: (started) =>
            Effect.sync(() => {
              if (started.result !== undefined) this.receiveSignal(signalName, started.result)
            })
        }),
        Effect.ensuring(Effect.sync(() => {
          this.leaveActive()
        })),
        Effect.asVoid
      )
    })
    return Effect.flatMap(
      this.inboxStep("child", scope, ids, (stepId) => childSignalName(scope, stepId), "child", startChild),
      ({ json, step }) => this.decode(step, codec, json)
    )
  }
}
