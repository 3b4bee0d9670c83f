import {
  Message,
  MessageState,
  PodAddress,
  RecipientAddress,
  Serialization,
  SerializedEnvelope,
  SerializedMessage,
  ShardingException
} from "@effect-cluster/cluster"
import { ShardingProtocol } from "@effect-cluster/cluster/node"
import { describe, expect, it } from "@effect/vitest"
import { Either, Equal, Exit, Hash, ParseResult, Schema } from "effect"
import * as models from "../src/internal/models.js"
import * as wire from "../src/internal/wire.js"
import { Fail, Increment } from "./utils/counter.js"

class Lookup extends Message.TaggedMessage<Lookup>()(
  "Lookup",
  Schema.String,
  Schema.Struct({ at: Schema.DateFromString, tags: Schema.Array(Schema.String), note: Schema.optional(Schema.String) }),
  { key: Schema.String },
  (_) => _.key
) {}

// The hand-written hot-path codecs and constructors must agree with the schemas they stand for. The wire
// text leaves out the 2024 type-id keys the schemas write (it never leaves the process).
const withoutTypeIds = (u: unknown): unknown =>
  Array.isArray(u)
    ? u.map(withoutTypeIds)
    : typeof u === "object" && u !== null
    ? Object.fromEntries(
      Object.entries(u).filter(([key]) => !key.startsWith("@effect/cluster/")).map(([key, value]) => [key, withoutTypeIds(value)])
    )
    : u
const EnvelopeJson = Schema.parseJson(SerializedEnvelope.schema)
const ReplyJson = Schema.parseJson(MessageState.schema(SerializedMessage.schema))

const envelopes = [
  SerializedEnvelope.make(RecipientAddress.makeRecipientAddress("Counter", "7"), "msg-1", SerializedMessage.make("{}"), 4),
  SerializedEnvelope.make(
    RecipientAddress.makeRecipientAddress("Ty\"pe", "ünïcode \n id"),
    "",
    SerializedMessage.make(JSON.stringify({ _tag: "Increment", messageId: "a\"b", by: 1.5 })),
    0
  )
]

describe("wire codecs (in-process transport)", () => {
  it("encode envelopes to the schema's text without the type-id keys, and decode both to equal envelopes", () => {
    for (const envelope of envelopes) {
      const text = wire.encodeEnvelope(envelope)
      const schemaText = Schema.encodeSync(EnvelopeJson)(envelope)
      expect(text).toBe(JSON.stringify(withoutTypeIds(JSON.parse(schemaText))))
      expect(Equal.equals(wire.decodeEnvelope(schemaText), envelope)).toBe(true)
      const decoded = wire.decodeEnvelope(text)
      expect(decoded).toBeInstanceOf(SerializedEnvelope.SerializedEnvelope)
      expect(decoded.recipientAddress).toBeInstanceOf(RecipientAddress.RecipientAddress)
      expect(decoded.body).toBeInstanceOf(SerializedMessage.SerializedMessage)
      expect(Equal.equals(decoded, Schema.decodeUnknownSync(EnvelopeJson)(text))).toBe(true)
      expect(Equal.equals(decoded, envelope)).toBe(true)
    }
  })

  it("decode what the schema accepts (missing epoch is 0, extra keys ignored) and reject the rest", () => {
    const legacy = JSON.stringify({
      recipientAddress: { recipientTypeName: "Counter", entityId: "7" },
      messageId: "x",
      body: { value: "{}" },
      extra: true
    })
    expect(wire.decodeEnvelope(legacy).epoch).toBe(0)
    expect(Equal.equals(wire.decodeEnvelope(legacy), Schema.decodeUnknownSync(EnvelopeJson)(legacy))).toBe(true)
    const invalid = [
      "[]",
      "null",
      JSON.stringify({ recipientAddress: { recipientTypeName: "C" }, messageId: "x", body: { value: "{}" } }),
      JSON.stringify({ recipientAddress: { recipientTypeName: "C", entityId: "1" }, messageId: 1, body: { value: "{}" } }),
      JSON.stringify({ recipientAddress: { recipientTypeName: "C", entityId: "1" }, messageId: "x", body: {} }),
      JSON.stringify({
        recipientAddress: { recipientTypeName: "C", entityId: "1" },
        messageId: "x",
        body: { value: "{}" },
        epoch: 1.5
      })
    ]
    for (const text of invalid) {
      expect(() => Schema.decodeUnknownSync(EnvelopeJson)(text)).toThrow()
      expect(() => wire.decodeEnvelope(text)).toThrow(wire.WireFormatError)
    }
  })

  it("encode and decode replies as the MessageState schema does (without the type-id keys)", () => {
    const replies = [MessageState.Acknowledged, MessageState.Processed(SerializedMessage.make("{\"_tag\":\"Success\"}"))]
    for (const reply of replies) {
      const text = wire.encodeReply(reply)
      const schemaText = Schema.encodeSync(ReplyJson)(reply)
      expect(text).toBe(JSON.stringify(withoutTypeIds(JSON.parse(schemaText))))
      expect(wire.decodeReply(schemaText)).toEqual(reply)
      const decoded = wire.decodeReply(text)
      const reference = Schema.decodeUnknownSync(ReplyJson)(text)
      expect(decoded._tag).toBe(reference._tag)
      if (MessageState.isProcessed(decoded) && MessageState.isProcessed(reference)) {
        expect(decoded.result).toBeInstanceOf(SerializedMessage.SerializedMessage)
        expect(Equal.equals(decoded.result, reference.result)).toBe(true)
      }
    }
    expect(() => wire.decodeReply(JSON.stringify({ _tag: "other" }))).toThrow(wire.WireFormatError)
    expect(() => wire.decodeReply(JSON.stringify({ _tag: "@effect/cluster/MessageState/Processed" }))).toThrow(
      wire.WireFormatError
    )
  })
})

describe("hot-path model constructors", () => {
  it("build the same objects as the Schema.Class constructors", () => {
    const pairs: Array<[object, object]> = [
      [models.serializedMessage("v"), new SerializedMessage.SerializedMessage({ value: "v" })],
      [models.recipientAddress("T", "e"), new RecipientAddress.RecipientAddress({ recipientTypeName: "T", entityId: "e" })],
      [
        models.serializedEnvelope(models.recipientAddress("T", "e"), "m", models.serializedMessage("v"), 3),
        SerializedEnvelope.make(RecipientAddress.makeRecipientAddress("T", "e"), "m", SerializedMessage.make("v"), 3)
      ]
    ]
    for (const [fast, reference] of pairs) {
      expect(Object.getPrototypeOf(fast)).toBe(Object.getPrototypeOf(reference))
      expect(Reflect.ownKeys(fast)).toEqual(Reflect.ownKeys(reference))
      expect(Equal.equals(fast, reference)).toBe(true)
      expect(Hash.hash(fast)).toBe(Hash.hash(reference))
      expect(String(fast)).toBe(String(reference))
      expect(JSON.stringify(fast)).toBe(JSON.stringify(reference))
    }
  })
})

describe("Serialization.jsonEncode", () => {
  it("refuses a value with no JSON text", () => {
    const result = Serialization.jsonEncode(Schema.Undefined, undefined)
    expect(Either.isLeft(result) && result.left._tag).toBe("SerializationException")
  })

  it("encodes and decodes a message's exits as Schema.Exit does (successes take a direct path)", () => {
    const lookup = new Lookup({ key: "k" })
    const cases: Array<[object, ReadonlyArray<Exit.Exit<any, any>>]> = [
      [lookup, [
        Exit.succeed({ at: new Date(0), tags: ["a", "b\""], note: "n" }),
        Exit.succeed({ at: new Date(1), tags: [] }),
        Exit.fail("not found"),
        Exit.die(new Error("boom"))
      ]],
      [new Fail({ messageId: "f", reason: "r" }), [Exit.void, Exit.fail("r")]],
      [new Increment({ messageId: "i", by: 1 }), [Exit.succeed(1), Exit.succeed(-0.5)]]
    ]
    for (const [message, exits] of cases) {
      const schema = Message.exitSchema(message as any) as Schema.Schema<Exit.Exit<any, any>, any>
      const reference = Schema.parseJson(Schema.exitSchema(message as any) as Schema.Schema<Exit.Exit<any, any>, any>)
      for (const exit of exits) {
        const body = Either.getOrThrow(Serialization.jsonEncode(schema, exit))
        expect(body.value).toBe(Schema.encodeSync(reference)(exit))
        const decoded = Either.getOrThrow(Serialization.jsonDecode(schema, body))
        expect(decoded).toEqual(Schema.decodeUnknownSync(reference)(body.value))
      }
      // Invalid successes fail (or not) as the Schema.Exit path does, with its message.
      for (const value of [{ bad: 1 }, "text", null]) {
        const text = JSON.stringify({ _tag: "Success", value })
        const result = Serialization.jsonDecode(schema, SerializedMessage.make(text))
        const expected = Schema.decodeUnknownEither(Schema.exitSchema(message as any))(JSON.parse(text))
        expect(Either.isLeft(result)).toBe(Either.isLeft(expected))
        if (Either.isLeft(result) && Either.isLeft(expected)) {
          expect(result.left.error).toBe(ParseResult.TreeFormatter.formatErrorSync(expected.left))
        }
      }
    }
    // An unencodable success is a SerializationException, as before.
    const schema = Message.exitSchema(lookup) as Schema.Schema<Exit.Exit<any, any>, any>
    expect(Either.isLeft(Serialization.jsonEncode(schema, Exit.succeed({ at: "not a date", tags: [] } as any)))).toBe(true)
  })

  it("round-trips a message and its exit", () => {
    const message = new Increment({ messageId: "m", by: 2 })
    const body = Either.getOrThrow(Serialization.jsonEncode(Increment, message))
    expect(body).toBeInstanceOf(SerializedMessage.SerializedMessage)
    expect(Either.getOrThrow(Serialization.jsonDecode(Increment, body))).toEqual(message)
    const exitSchema = Schema.exitSchema(message)
    const exit = Either.getOrThrow(
      Serialization.jsonDecode(exitSchema, Either.getOrThrow(Serialization.jsonEncode(exitSchema, Exit.succeed(3))))
    )
    expect(Exit.isExit(exit) && Equal.equals(exit, Exit.succeed(3))).toBe(true)
  })
})

describe("network wire schemas (ShardingProtocol)", () => {
  const envelope = ["Counter", "7", "msg-1", "{}", 4] as const
  const error = new ShardingException.PodUnavailableException({
    podAddress: PodAddress.make("127.0.0.1", 1),
    notDelivered: true
  })

  it("accept the batches Schema.Array(WireEnvelope) accepts, and only those", () => {
    const reference = Schema.is(Schema.Array(ShardingProtocol.WireEnvelope))
    const fast = Schema.is(ShardingProtocol.WireEnvelopes)
    const samples: Array<unknown> = [
      [],
      [envelope, envelope],
      [["Counter", "7", "msg-1", "{}", 1.5]],
      [["Counter", "7", "msg-1", "{}"]],
      [["Counter", "7", "msg-1", "{}", 4, "extra"]],
      [["Counter", 7, "msg-1", "{}", 4]],
      [null],
      { 0: envelope, length: 1 },
      "envelopes"
    ]
    for (const sample of samples) expect(fast(sample), JSON.stringify(sample)).toBe(reference(sample))
  })

  it("carry replies as Schema.Array(WireReply) does: error replies through the exceptions' schema", () => {
    const replies: ReadonlyArray<typeof ShardingProtocol.WireReply.Type> = [[0], [1, "{\"_tag\":\"Success\"}"], [2, error]]
    const encoded = Schema.encodeSync(ShardingProtocol.WireReplies)(replies)
    expect(encoded).toEqual(Schema.encodeSync(Schema.Array(ShardingProtocol.WireReply))(replies))
    const decoded = Schema.decodeUnknownSync(ShardingProtocol.WireReplies)(JSON.parse(JSON.stringify(encoded)))
    expect(decoded[2]![1]).toBeInstanceOf(ShardingException.PodUnavailableException)
    expect(decoded).toEqual(replies)
    for (const bad of [[[3]], [[1, 5]], [[2, { _tag: "Nope" }]], [[0, "x"]], "replies"]) {
      expect(Either.isLeft(Schema.decodeUnknownEither(ShardingProtocol.WireReplies)(bad)), JSON.stringify(bad)).toBe(true)
    }
  })
})
