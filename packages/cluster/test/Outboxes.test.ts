/**
 * The network `Pods` keeps one outbox per pod it sends to; the outboxes of pods that left (idle ones) are
 * dropped once more than a bound exist, and one with envelopes queued or in flight never is.
 */
import { PodAddress } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { makeOutboxes, Pending } from "../src/node/internal/outboxes.js"

const pod = (port: number) => PodAddress.make("127.0.0.1", port)

describe("PodsRpc outboxes", () => {
  it("finds one outbox per pod, by address object or by host and port", () => {
    const outboxOf = makeOutboxes(4)
    const a = outboxOf(pod(1))
    expect(outboxOf(pod(1))).toBe(a)
    expect(outboxOf(a.pod)).toBe(a)
    expect(outboxOf(pod(2))).not.toBe(a)
    expect(outboxOf.size()).toBe(2)
  })

  it("drops idle outboxes past the bound, and keeps busy ones", () => {
    const outboxOf = makeOutboxes(4)
    const queued = outboxOf(pod(1))
    queued.queue.push(new Pending(undefined as never, 1, 0, () => {}, undefined as never, undefined))
    const inFlight = outboxOf(pod(2))
    inFlight.inFlight = 1
    const flushing = outboxOf(pod(3))
    flushing.flushing = true
    const idleAddress = pod(4)
    const idle = outboxOf(idleAddress)
    // pods come and go: a thousand more, each sent to once
    for (let port = 100; port < 1100; port++) outboxOf(pod(port))
    expect(outboxOf.size()).toBeLessThanOrEqual(4)
    // the busy outboxes are still the ones found
    expect(outboxOf(pod(1))).toBe(queued)
    expect(outboxOf(pod(2))).toBe(inFlight)
    expect(outboxOf(pod(3))).toBe(flushing)
    // the idle one was dropped: its pod (by the same address object, too) gets a fresh outbox
    expect(idle.retired).toBe(true)
    const again = outboxOf(idleAddress)
    expect(again).not.toBe(idle)
    expect(again.retired).toBe(false)
    expect(outboxOf(pod(4))).toBe(again)
  })
})
