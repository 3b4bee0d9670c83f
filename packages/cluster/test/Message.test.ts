import { Message } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, PrimaryKey, Schema } from "effect"

class ProcessPayment extends Message.TaggedMessage<ProcessPayment>()(
  "ProcessPayment",
  Schema.String,
  Schema.Number,
  { orderId: Schema.String, amount: Schema.NumberFromString },
  (_) => "payment-" + _.orderId
) {}

describe("Message", () => {
  it("gives instances a tag, fields and a primary key from the id function", () => {
    const message = new ProcessPayment({ orderId: "o-1", amount: 12 })
    expect(message._tag).toBe("ProcessPayment")
    expect(message.amount).toBe(12)
    expect(PrimaryKey.value(message)).toBe("payment-o-1")
    expect(Message.isMessageWithResult(message)).toBe(true)
    expect(Message.isMessageWithResult({ _tag: "ProcessPayment" })).toBe(false)
  })

  it.effect("is a Schema that round-trips, keeping the primary key", () =>
    Effect.gen(function*() {
      const message = new ProcessPayment({ orderId: "o-2", amount: 3 })
      const encoded = yield* Schema.encode(ProcessPayment)(message)
      expect(encoded).toEqual({ _tag: "ProcessPayment", orderId: "o-2", amount: "3" })
      const decoded = yield* Schema.decodeUnknown(ProcessPayment)(JSON.parse(JSON.stringify(encoded)))
      expect(decoded).toBeInstanceOf(ProcessPayment)
      expect(PrimaryKey.value(decoded)).toBe("payment-o-2")
    }))

  it.effect("exposes the success, failure and exit schemas of an instance", () =>
    Effect.gen(function*() {
      const message = new ProcessPayment({ orderId: "o-3", amount: 1 })
      expect(yield* Schema.decodeUnknown(Message.successSchema(message))(7)).toBe(7)
      expect(yield* Schema.decodeUnknown(Message.failureSchema(message))("no")).toBe("no")
      const exit = Exit.fail("declined")
      const encoded = yield* Schema.encode(Message.exitSchema(message))(exit)
      const decoded = yield* Schema.decodeUnknown(Message.exitSchema(message))(encoded)
      expect(Exit.isFailure(decoded)).toBe(true)
      expect(decoded).toEqual(exit)
      const wrong = yield* Effect.either(Schema.decodeUnknown(Message.successSchema(message))("not a number"))
      expect(wrong._tag).toBe("Left")
    }))
})
