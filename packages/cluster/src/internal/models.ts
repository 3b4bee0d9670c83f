import { RecipientAddress, TypeId as RecipientAddressTypeId } from "../RecipientAddress.js"
import { SerializedEnvelope, TypeId as SerializedEnvelopeTypeId } from "../SerializedEnvelope.js"
import { SerializedMessage, TypeId as SerializedMessageTypeId } from "../SerializedMessage.js"

/**
 * Hot-path constructors of the wire models, for values whose types are already known (built by this
 * package, or checked by the wire decoder). A `Schema.Class` constructor copies its props, merges defaults
 * and (optionally) validates: about 1 µs each, several times per cross-pod message. These build the same
 * object (same prototype, same own properties, type id included, so `Equal`, `Hash`, `instanceof` and encoding agree; a
 * test pins it) in a few nanoseconds.
 */

const serializedMessagePrototype = SerializedMessage.prototype
const recipientAddressPrototype = RecipientAddress.prototype
const serializedEnvelopePrototype = SerializedEnvelope.prototype

export const serializedMessage = (value: string): SerializedMessage => {
  const self = Object.create(serializedMessagePrototype)
  self.value = value
  self[SerializedMessageTypeId] = SerializedMessageTypeId
  return self
}

export const recipientAddress = (recipientTypeName: string, entityId: string): RecipientAddress => {
  const self = Object.create(recipientAddressPrototype)
  self.recipientTypeName = recipientTypeName
  self.entityId = entityId
  self[RecipientAddressTypeId] = RecipientAddressTypeId
  return self
}

export const serializedEnvelope = (
  address: RecipientAddress,
  messageId: string,
  body: SerializedMessage,
  epoch: number
): SerializedEnvelope => {
  const self = Object.create(serializedEnvelopePrototype)
  self.recipientAddress = address
  self.messageId = messageId
  self.body = body
  self.epoch = epoch
  self[SerializedEnvelopeTypeId] = SerializedEnvelopeTypeId
  return self
}
