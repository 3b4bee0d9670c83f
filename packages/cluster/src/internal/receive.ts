import * as Exit from "effect/Exit"
import * as Effect from "effect/Effect"
import * as MessageState from "../MessageState.js"
import { RecipientAddress } from "../RecipientAddress.js"
import type { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { SerializedMessage } from "../SerializedMessage.js"
import type { ShardingException } from "../ShardingException.js"
import {
  EntityNotManagedByThisPodException,
  EntityTypeNotRegisteredException,
  SerializationException
} from "../ShardingException.js"
import * as sync from "./exit.js"
import { exitSchemaOf } from "./exitSchema.js"
import { shardIdOf } from "./hash.js"
import type { PodState } from "./podState.js"

type Reply = MessageState.MessageState<Exit.Exit<unknown, unknown>>

const acknowledged = Exit.succeed(MessageState.Acknowledged)

/**
 * The owner's side of a delivery: the checks that this pod serves the shard at the sender's epoch, the
 * decoding of a remote body, the entity's mailbox, the encoding of the reply.
 */
export interface Receive {
  /** Delivers an already-decoded message to a local entity (or topic instance). */
  readonly deliverLocal: (
    typeName: string,
    entityId: string,
    shard: number,
    epoch: number,
    message: unknown,
    messageId: string | undefined
  ) => Effect.Effect<Reply, ShardingException>
  /** Delivers an envelope from another pod; runs its steps when called (inside a running effect). */
  readonly receiveNow: (envelope: SerializedEnvelope) => Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException>
  /** Decodes a remote reply with the message's exit schema. */
  readonly decodeReply: (
    message: unknown,
    state: MessageState.MessageState<SerializedMessage>
  ) => Effect.Effect<Reply, SerializationException>
}

export const makeReceive = (state: PodState): Receive => {
  const { self, serialization } = state.services

  const notRegistered = (typeName: string) =>
    Exit.fail(new EntityTypeNotRegisteredException({ entityType: typeName, podAddress: self }))

  const replyError = (error: SerializationException) => new SerializationException({ error: error.error, stage: "reply" })

  const deliverLocal: Receive["deliverLocal"] = (typeName, entityId, shard, epoch, message, messageId) => {
    const manager = state.entityManagers.get(typeName)
    if (manager === undefined) return notRegistered(typeName)
    if (!manager.isTopic && !state.canServe(shard, epoch)) {
      return Exit.fail(
        new EntityNotManagedByThisPodException({
          recipientAddress: new RecipientAddress({ recipientTypeName: typeName, entityId })
        })
      )
    }
    return manager.deliver(entityId, shard, message, messageId)
  }

  // Decode the body once, deliver, encode the reply once. Each step that completes synchronously (JSON
  // serialization, a handler answering with an Exit) is continued without a fiber operation.
  const receiveNow: Receive["receiveNow"] = (envelope) => {
    const address = envelope.recipientAddress
    const manager = state.entityManagers.get(address.recipientTypeName)
    if (manager === undefined) return notRegistered(address.recipientTypeName)
    const shard = shardIdOf(address.entityId, state.numberOfShards)
    if (!manager.isTopic && !state.canServe(shard, envelope.epoch)) {
      return Exit.fail(new EntityNotManagedByThisPodException({ recipientAddress: address }))
    }
    const messageId = envelope.messageId === "" ? undefined : envelope.messageId
    const decoded = serialization.decode(manager.options.recipientType.schema, envelope.body)
    // A decode that suspended (a codec doing I/O, say) may end after the shard left: check again.
    const owned = sync.completed(decoded) !== undefined || manager.isTopic
      ? decoded
      : Effect.flatMap(decoded, (message) =>
        state.canServe(shard, envelope.epoch)
          ? Effect.succeed(message)
          : Effect.fail(new EntityNotManagedByThisPodException({ recipientAddress: address })))
    return sync.flatMap(
      owned,
      (message) =>
        sync.flatMap(
          manager.deliver(address.entityId, shard, message, messageId),
          (reply): Effect.Effect<MessageState.MessageState<SerializedMessage>, ShardingException> =>
            MessageState.isProcessed(reply)
              ? sync.mapBoth(
                serialization.encode(exitSchemaOf(message as object), reply.result),
                replyError,
                MessageState.Processed
              )
              : acknowledged
        )
    )
  }

  const decodeReply: Receive["decodeReply"] = (message, reply) =>
    MessageState.isProcessed(reply)
      ? sync.mapBoth(
        serialization.decode(exitSchemaOf(message as object), reply.result),
        replyError,
        (exit): Reply => MessageState.Processed(exit)
      )
      : acknowledged

  return { deliverLocal, receiveNow, decodeReply }
}
