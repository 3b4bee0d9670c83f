/**
 * How long a start whose execution's shard is between owners is sent again (`resendingStart`, on the
 * TestClock here): 12 refusals of a moved shard plus one a second of the grace period; an undelivered start
 * once a second for the grace period; and a grace period without end (Infinity, a misconfiguration) followed
 * for at most `maxResendGraceMillis`, so a start refused for good (an engine closed while its pod holds the
 * shard) still fails rather than being resent for ever.
 */
import { RecipientAddress, ShardingException } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, TestClock } from "effect"
import { maxResendGraceMillis, resendingStart } from "../src/internal/cluster/resend.js"
import { shardMoved } from "../src/internal/engineLaunch.js"

const notDelivered = () =>
  new ShardingException.MessageNotDeliveredException({
    recipientAddress: new RecipientAddress.RecipientAddress({ recipientTypeName: "Workflows", entityId: "e" }),
    attempts: 3,
    reason: "PodUnavailableException after 3 attempts"
  })

/** Sends that always fail with `error`, counted; resent with `graceMillis` on the test's clock. */
const alwaysFailing = (error: () => unknown, graceMillis: number) =>
  Effect.gen(function*() {
    const sent = { count: 0 }
    const clock = yield* Effect.clock
    const fiber = yield* Effect.fork(resendingStart(
      Effect.suspend(() => {
        sent.count++
        return Effect.fail(error())
      }),
      graceMillis,
      clock
    ))
    return { sent, fiber }
  })

/**
 * Sends always failing with `error`, resent with `graceMillis`: still resending at `runningAt` seconds, ended
 * with the error by `endedBy`, after `sends` sends.
 */
const endsWithin = (
  error: () => unknown,
  graceMillis: number,
  expected: { readonly runningAt: number; readonly endedBy: number; readonly sends: number }
) =>
  Effect.gen(function*() {
    const { fiber, sent } = yield* alwaysFailing(error, graceMillis)
    yield* TestClock.adjust(`${expected.runningAt} seconds`)
    expect(fiber.unsafePoll()).toBeNull()
    yield* TestClock.adjust(`${expected.endedBy - expected.runningAt} seconds`)
    expect(yield* Fiber.await(fiber)).toEqual(Exit.fail(error()))
    expect(sent.count).toBe(expected.sends)
  })

describe("a start's resends", () => {
  it.effect("a moved shard's refusal: 12 resends (about 8.5 s) and one a second of a 30 s grace, then its error", () =>
    endsWithin(shardMoved, 30_000, { runningAt: 38, endedBy: 48, sends: 1 + 12 + 30 }))

  it.effect("not delivered: sent again once a second until the grace period has passed since the first send", () =>
    endsWithin(notDelivered, 10_000, { runningAt: 9, endedBy: 11, sends: 11 }))

  it.effect("without a grace period, neither is sent again", () =>
    Effect.gen(function*() {
      const undelivered = yield* alwaysFailing(notDelivered, 0)
      expect(yield* Fiber.await(undelivered.fiber)).toEqual(Exit.fail(notDelivered()))
      expect(undelivered.sent.count).toBe(1)
      const refused = yield* alwaysFailing(shardMoved, 0)
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.await(refused.fiber)).toEqual(Exit.fail(shardMoved()))
      expect(refused.sent.count).toBe(13)
    }))

  it.effect("an endless grace period (Infinity) is followed for at most maxResendGraceMillis: a start refused for good fails", () =>
    Effect.gen(function*() {
      const refused = yield* alwaysFailing(shardMoved, Infinity)
      const undelivered = yield* alwaysFailing(notDelivered, Infinity)
      const start = yield* Clock.currentTimeMillis
      yield* TestClock.adjust(maxResendGraceMillis + 20_000)
      // (polled, not awaited: resent for ever, they would never end)
      expect(refused.fiber.unsafePoll()).toEqual(Exit.fail(shardMoved()))
      expect(refused.sent.count).toBe(1 + 12 + maxResendGraceMillis / 1000)
      expect(undelivered.fiber.unsafePoll()).toEqual(Exit.fail(notDelivered()))
      expect(undelivered.sent.count).toBe(1 + maxResendGraceMillis / 1000)
      expect((yield* Clock.currentTimeMillis) - start).toBe(maxResendGraceMillis + 20_000)
    }))
})
