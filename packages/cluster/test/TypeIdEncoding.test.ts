/**
 * The 2024 encoded forms of the models (api-2024.md §1.1 "Pod, PodAddress, ShardId, ..." and §2.8): each
 * carries its type id as the string key `"@effect/cluster/<Name>": "@effect/cluster/<Name>"`, decoded to a
 * symbol-keyed property whose value is the symbol. Decoding also accepts the form this package wrote
 * before it carried the key (no key; `{ _tag }` for PoisonPill), as a pod of the previous release sends it
 * over the network during a rolling upgrade. (No stored row holds a model's JSON: the SQL storage and
 * `AtLeastOnceStorage` keep plain columns, see AtLeastOnce.test.ts for a hand-written 2024 row.)
 */
import * as MessageState from "@effect-cluster/cluster/MessageState"
import * as PoisonPill from "@effect-cluster/cluster/PoisonPill"
import * as Pod from "@effect-cluster/cluster/Pod"
import * as PodAddress from "@effect-cluster/cluster/PodAddress"
import * as RecipientAddress from "@effect-cluster/cluster/RecipientAddress"
import * as SerializedEnvelope from "@effect-cluster/cluster/SerializedEnvelope"
import * as SerializedMessage from "@effect-cluster/cluster/SerializedMessage"
import * as ShardId from "@effect-cluster/cluster/ShardId"
import * as ShardingException from "@effect-cluster/cluster/ShardingException"
import { describe, expect, it } from "@effect/vitest"
import * as Equal from "effect/Equal"
import * as Hash from "effect/Hash"
import * as Schema from "effect/Schema"
import * as ShardManagerProtocol from "../src/node/ShardManagerProtocol.js"

const key = (name: string) => ({ [`@effect/cluster/${name}`]: `@effect/cluster/${name}` })

const address = PodAddress.make("10.0.0.1", 54321)
const recipient = RecipientAddress.makeRecipientAddress("Counter", "7")
const body = SerializedMessage.make("{\"_tag\":\"Increment\"}")

// Each model, its 2024 JSON and the JSON this package encoded before the type-id keys.
const cases: ReadonlyArray<{
  readonly name: string
  readonly schema: Schema.Schema<any, any>
  readonly typeId: symbol
  readonly value: object
  readonly json2024: unknown
  readonly previous: unknown
}> = [
  {
    name: "ShardId",
    schema: ShardId.schema,
    typeId: ShardId.TypeId,
    value: ShardId.make(7),
    json2024: { ...key("ShardId"), value: 7 },
    previous: { value: 7 }
  },
  {
    name: "PodAddress",
    schema: PodAddress.schema,
    typeId: PodAddress.TypeId,
    value: address,
    json2024: { ...key("PodAddress"), host: "10.0.0.1", port: 54321 },
    previous: { host: "10.0.0.1", port: 54321 }
  },
  {
    name: "Pod",
    schema: Pod.schema,
    typeId: Pod.TypeId,
    value: Pod.make(address, "1.2.0"),
    json2024: { ...key("Pod"), address: { ...key("PodAddress"), host: "10.0.0.1", port: 54321 }, version: "1.2.0" },
    previous: { address: { host: "10.0.0.1", port: 54321 }, version: "1.2.0" }
  },
  {
    name: "RecipientAddress",
    schema: RecipientAddress.schema,
    typeId: RecipientAddress.TypeId,
    value: recipient,
    json2024: { ...key("RecipientAddress"), recipientTypeName: "Counter", entityId: "7" },
    previous: { recipientTypeName: "Counter", entityId: "7" }
  },
  {
    name: "SerializedMessage",
    schema: SerializedMessage.schema,
    typeId: SerializedMessage.TypeId,
    value: body,
    json2024: { ...key("SerializedMessage"), value: "{\"_tag\":\"Increment\"}" },
    previous: { value: "{\"_tag\":\"Increment\"}" }
  },
  {
    // 2024 envelopes had no epoch: this package adds it (0 when absent, as in a 2024 envelope).
    name: "SerializedEnvelope",
    schema: SerializedEnvelope.schema,
    typeId: SerializedEnvelope.TypeId,
    value: SerializedEnvelope.make(recipient, "msg-1", body, 0),
    json2024: {
      ...key("SerializedEnvelope"),
      recipientAddress: { ...key("RecipientAddress"), recipientTypeName: "Counter", entityId: "7" },
      messageId: "msg-1",
      body: { ...key("SerializedMessage"), value: "{\"_tag\":\"Increment\"}" }
    },
    previous: {
      recipientAddress: { recipientTypeName: "Counter", entityId: "7" },
      messageId: "msg-1",
      body: { value: "{\"_tag\":\"Increment\"}" },
      epoch: 0
    }
  },
  {
    name: "PoisonPill",
    schema: PoisonPill.schema,
    typeId: PoisonPill.TypeId,
    value: new PoisonPill.PoisonPill(),
    json2024: key("PoisonPill"),
    previous: { _tag: "@effect/cluster/PoisonPill" }
  }
]

describe("the models' encoded forms carry the 2024 type-id keys", () => {
  for (const { json2024, name, previous, schema, typeId, value } of cases) {
    it(`${name}: encodes to the 2024 JSON and decodes it, and the previous form, to an equal value`, () => {
      const encoded = Schema.encodeSync(schema)(value)
      // The envelope's epoch is this package's addition to the 2024 shape.
      expect(encoded).toEqual(name === "SerializedEnvelope" ? { ...(json2024 as object), epoch: 0 } : json2024)
      // Through JSON text, as the transports carry it.
      const text = JSON.stringify(encoded)
      expect(JSON.parse(text)).toEqual(encoded)
      for (const form of [json2024, JSON.parse(text), previous]) {
        const decoded = Schema.decodeUnknownSync(schema)(form)
        expect(decoded).toBeInstanceOf(value.constructor)
        expect(decoded[typeId]).toBe(typeId)
        expect(Equal.equals(decoded, value)).toBe(true)
        expect(Hash.hash(decoded)).toBe(Hash.hash(value))
        expect(Schema.encodeSync(schema)(decoded)).toEqual(encoded)
      }
      expect((value as Record<symbol, unknown>)[typeId]).toBe(typeId)
      // A wrong type-id value is not this model.
      expect(() => Schema.decodeUnknownSync(schema)({ ...(json2024 as object), [`@effect/cluster/${name}`]: "other" }))
        .toThrow()
    })
  }

  it("PoisonPill still has its _tag (on the prototype, not encoded)", () => {
    const pill = Schema.decodeUnknownSync(PoisonPill.schema)(key("PoisonPill"))
    expect(pill._tag).toBe("@effect/cluster/PoisonPill")
    expect(Object.keys(pill)).toEqual([])
    expect(PoisonPill.isPoisonPill(pill)).toBe(true)
  })

  it("MessageState: both states encode to the 2024 JSON and decode from it and from the previous form", () => {
    const schema = MessageState.schema(SerializedMessage.schema)
    const processed = MessageState.Processed(body)
    const ack2024 = { ...key("MessageState"), _tag: "@effect/cluster/MessageState/Acknowledged" }
    const processed2024 = {
      ...key("MessageState"),
      _tag: "@effect/cluster/MessageState/Processed",
      result: { ...key("SerializedMessage"), value: body.value }
    }
    expect(Schema.encodeSync(schema)(MessageState.Acknowledged)).toEqual(ack2024)
    expect(Schema.encodeSync(schema)(processed)).toEqual(processed2024)
    for (const form of [ack2024, { _tag: "@effect/cluster/MessageState/Acknowledged" }]) {
      const decoded = Schema.decodeUnknownSync(schema)(form)
      expect(decoded).toEqual(MessageState.Acknowledged)
      expect(decoded[MessageState.TypeId]).toBe(MessageState.TypeId)
    }
    for (const form of [processed2024, { _tag: "@effect/cluster/MessageState/Processed", result: { value: body.value } }]) {
      const decoded = Schema.decodeUnknownSync(schema)(form)
      expect(decoded[MessageState.TypeId]).toBe(MessageState.TypeId)
      expect(MessageState.isProcessed(decoded) && Equal.equals(decoded.result, body)).toBe(true)
      expect(Schema.encodeSync(schema)(decoded)).toEqual(processed2024)
    }
    expect(MessageState.Acknowledged[MessageState.TypeId]).toBe(MessageState.TypeId)
    expect(processed[MessageState.TypeId]).toBe(MessageState.TypeId)
  })
})

describe("the network protocol during a rolling upgrade", () => {
  it("a pod of the previous release (no type-id keys) is understood by the manager's protocol, and back", () => {
    const previousPod = { address: { host: "10.0.0.1", port: 54321 }, version: "1.2.0" }
    const payload = ShardManagerProtocol.Register.payloadSchema
    // The server checks the encoded payload before decoding it: both forms pass.
    const check = Schema.is(Schema.encodedBoundSchema(payload))
    expect(check({ pod: previousPod })).toBe(true)
    const encoded = Schema.encodeSync(payload)({ pod: Pod.make(address, "1.2.0") })
    expect(check(encoded)).toBe(true)
    expect(Equal.equals(Schema.decodeUnknownSync(payload)({ pod: previousPod }).pod, Pod.make(address, "1.2.0"))).toBe(true)
    // The previous release's schema (no key) ignores the key: it reads the new form too.
    const PreviousPod = Schema.Struct({
      address: Schema.Struct({ host: Schema.String, port: Schema.Int }),
      version: Schema.String
    })
    expect(Schema.decodeUnknownSync(PreviousPod)(encoded.pod)).toEqual(previousPod)
  })

  it("a typed sharding error of the previous release decodes, with its addresses", () => {
    const previous = { _tag: "PodUnavailableException", podAddress: { host: "10.0.0.1", port: 54321 } }
    const decoded = Schema.decodeUnknownSync(ShardingException.schema)(previous)
    expect(decoded._tag).toBe("PodUnavailableException")
    expect(ShardingException.isPodUnavailableException(decoded) && Equal.equals(decoded.podAddress, address)).toBe(true)
    expect(Schema.encodeSync(ShardingException.schema)(decoded)).toMatchObject({
      podAddress: { ...key("PodAddress"), host: "10.0.0.1", port: 54321 }
    })
  })
})
