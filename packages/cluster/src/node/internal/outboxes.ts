/**
 * The network `Pods`' per-pod outboxes (see `PodsRpc`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import type { SendContinuation } from "../../internal/direct.js"
import type { MessageState } from "../../MessageState.js"
import type { PodAddress } from "../../PodAddress.js"
import type { SerializedEnvelope } from "../../SerializedEnvelope.js"
import type { SerializedMessage } from "../../SerializedMessage.js"
import type { ShardingException } from "../../ShardingException.js"

/**
 * An envelope waiting in an outbox, and how to answer its sender: its outcome goes through the sender's
 * continuation as it arrives, and the sender resumes with what that returns.
 */
export class Pending {
  sent = false
  // (answered once: a closing Pods answers what it holds, and a batch's own outcome may come after)
  private answered = false
  constructor(
    readonly envelope: SerializedEnvelope,
    readonly size: number,
    readonly queuedAt: number,
    private readonly resume: (effect: Effect.Effect<unknown, unknown>) => void,
    private readonly then: SendContinuation<any, any>,
    /** The waiting sender's fiber, when its wait can be interrupted. */
    private readonly fiber: Fiber.RuntimeFiber<any, any> | undefined
  ) {}

  /** Whether the sender stopped waiting (it was interrupted): its envelope need not go. */
  get abandoned(): boolean {
    return this.fiber !== undefined && !Cause.isEmpty(this.fiber.getFiberRef(FiberRef.interruptedCause))
  }

  fail(error: ShardingException): void {
    this.answer(false, error)
  }

  succeed(state: MessageState<SerializedMessage>): void {
    this.answer(true, state)
  }

  private answer(succeeded: boolean, value: any): void {
    if (this.answered) return
    this.answered = true
    let next: Effect.Effect<unknown, unknown>
    try {
      next = succeeded ? this.then.onSuccess(value) : this.then.onFailure(value)
    } catch (defect) {
      next = Exit.die(defect)
    }
    this.resume(next)
  }
}

/** The envelopes queued for one pod, and its requests in flight. */
export interface Outbox {
  readonly pod: PodAddress
  readonly queue: Array<Pending>
  inFlight: number
  /** The batches whose request is on its way (from the moment they are taken). */
  readonly batches: Set<ReadonlyArray<Pending>>
  flushing: boolean
  /** Dropped from the outboxes while idle (see `makeOutboxes`): a send to its pod takes a new one. */
  retired: boolean
}

/** Outboxes kept before the idle ones are dropped (pods come and go over a pod's life). */
const outboxesKept = 64

/**
 * The pods' outboxes, found by address object first (senders pass the routing table's), else by host:port.
 * Once more than `outboxesKept` exist, making another drops the idle ones (nothing queued or in flight):
 * the outboxes of pods that left do not pile up. `size` counts the outboxes kept; `all` lists them (every
 * queued envelope is in one of them: a retired outbox is empty).
 *
 * @internal
 */
export const makeOutboxes = (kept = outboxesKept) => {
  const outboxes = new Map<string, Outbox>()
  const byAddress = new WeakMap<PodAddress, Outbox>()
  const dropIdle = () => {
    for (const [key, outbox] of outboxes) {
      if (outbox.queue.length === 0 && outbox.inFlight === 0 && !outbox.flushing) {
        outbox.retired = true
        outboxes.delete(key)
      }
    }
  }
  const outboxOf = (pod: PodAddress): Outbox => {
    let outbox = byAddress.get(pod)
    if (outbox !== undefined && !outbox.retired) return outbox
    const key = `${pod.host}:${pod.port}`
    outbox = outboxes.get(key)
    if (outbox === undefined) {
      if (outboxes.size >= kept) dropIdle()
      outbox = { pod, queue: [], inFlight: 0, batches: new Set(), flushing: false, retired: false }
      outboxes.set(key, outbox)
    }
    byAddress.set(pod, outbox)
    return outbox
  }
  return Object.assign(outboxOf, { size: () => outboxes.size, all: (): Iterable<Outbox> => outboxes.values() })
}

