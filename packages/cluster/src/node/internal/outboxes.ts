/**
 * The network `Pods`' per-pod outboxes (see `PodsRpc`).
 *
 * @internal
 */
import type * as Exit from "effect/Exit"
import type { MessageState } from "../../MessageState.js"
import type { PodAddress } from "../../PodAddress.js"
import type { SerializedEnvelope } from "../../SerializedEnvelope.js"
import type { SerializedMessage } from "../../SerializedMessage.js"
import type { ShardingException } from "../../ShardingException.js"

/** An envelope waiting in an outbox, and how to answer its sender. */
export interface Pending {
  readonly envelope: SerializedEnvelope
  readonly size: number
  readonly queuedAt: number
  readonly resume: (exit: Exit.Exit<MessageState<SerializedMessage>, ShardingException>) => void
  sent: boolean
}

/** The envelopes queued for one pod, and its requests in flight. */
export interface Outbox {
  readonly pod: PodAddress
  readonly queue: Array<Pending>
  inFlight: number
  flushing: boolean
  /** Dropped from the outboxes while idle (see `makeOutboxes`): a send to its pod takes a new one. */
  retired: boolean
}

/** Outboxes kept before the idle ones are dropped (pods come and go over a pod's life). */
const outboxesKept = 64

/**
 * The pods' outboxes, found by address object first (senders pass the routing table's), else by host:port.
 * Once more than `outboxesKept` exist, making another drops the idle ones (nothing queued or in flight):
 * the outboxes of pods that left do not pile up. `size` counts the outboxes kept.
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
      outbox = { pod, queue: [], inFlight: 0, flushing: false, retired: false }
      outboxes.set(key, outbox)
    }
    byAddress.set(pod, outbox)
    return outbox
  }
  return Object.assign(outboxOf, { size: () => outboxes.size })
}

