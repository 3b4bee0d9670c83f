import * as MessageState from "../MessageState.js"
import type { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import * as models from "./models.js"

/**
 * The JSON of envelopes and replies between pods of one process (the in-process transport), written by
 * hand for the hot path. The text is what `Schema.parseJson(SerializedEnvelope)` and
 * `Schema.parseJson(MessageState.schema(SerializedMessage))` produce without the 2024 type-id keys
 * (`"@effect/cluster/SerializedEnvelope": ...` and the like: this text never leaves the process, and the
 * schemas decode it to equal values); decoding accepts what those schemas accept (type-id keys and other
 * extra keys ignored, a missing `epoch` is 0). A test pins the equivalence. The message body inside is
 * encoded through the message's own schema by `Serialization`.
 */
const ACKNOWLEDGED = "@effect/cluster/MessageState/Acknowledged"
const PROCESSED = "@effect/cluster/MessageState/Processed"

export class WireFormatError extends Error {
  constructor(what: string, text: string) {
    super(`invalid ${what} on the wire: ${text.length > 200 ? text.slice(0, 200) + "..." : text}`)
  }
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

export const encodeEnvelope = (envelope: SerializedEnvelope): string =>
  JSON.stringify({
    recipientAddress: {
      recipientTypeName: envelope.recipientAddress.recipientTypeName,
      entityId: envelope.recipientAddress.entityId
    },
    messageId: envelope.messageId,
    body: { value: envelope.body.value },
    epoch: envelope.epoch
  })

export const decodeEnvelope = (text: string): SerializedEnvelope => {
  const u: unknown = JSON.parse(text)
  if (!isObject(u)) throw new WireFormatError("envelope", text)
  const address = u.recipientAddress
  const body = u.body
  const epoch = u.epoch === undefined ? 0 : u.epoch
  if (
    !isObject(address) || typeof address.recipientTypeName !== "string" || typeof address.entityId !== "string" ||
    typeof u.messageId !== "string" || !isObject(body) || typeof body.value !== "string" ||
    typeof epoch !== "number" || !Number.isSafeInteger(epoch)
  ) throw new WireFormatError("envelope", text)
  return models.serializedEnvelope(
    models.recipientAddress(address.recipientTypeName, address.entityId),
    u.messageId,
    models.serializedMessage(body.value),
    epoch
  )
}

export const encodeReply = (state: MessageState.MessageState<SerializedMessage>): string =>
  MessageState.isProcessed(state)
    ? JSON.stringify({ _tag: PROCESSED, result: { value: state.result.value } })
    : JSON.stringify({ _tag: ACKNOWLEDGED })

export const decodeReply = (text: string): MessageState.MessageState<SerializedMessage> => {
  const u: unknown = JSON.parse(text)
  if (isObject(u)) {
    if (u._tag === ACKNOWLEDGED) return MessageState.Acknowledged
    if (u._tag === PROCESSED && isObject(u.result) && typeof u.result.value === "string") {
      return MessageState.Processed(models.serializedMessage(u.result.value))
    }
  }
  throw new WireFormatError("reply", text)
}
