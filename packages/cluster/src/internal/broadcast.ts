import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as HashMap from "effect/HashMap"
import type { Broadcaster } from "../Broadcaster.js"
import * as MessageState from "../MessageState.js"
import type { PodAddress } from "../PodAddress.js"
import { RecipientAddress } from "../RecipientAddress.js"
import type { TopicType } from "../RecipientType.js"
import { SerializedEnvelope } from "../SerializedEnvelope.js"
import type { ShardingException } from "../ShardingException.js"
import { EntityNotManagedByThisPodException } from "../ShardingException.js"
import { shardIdOf } from "./hash.js"
import { podKeyOf, type PodState } from "./podState.js"
import { primaryKeyOf } from "./primaryKey.js"
import type { Receive } from "./receive.js"
import { invalidMessage } from "./validate.js"

/**
 * Topics: a broadcast goes to the topic's instance on every pod the manager knows when it is sent; each
 * pod's reply (or the error that kept it from that pod) is reported.
 */
export interface Broadcast {
  /** The pods known from the routing table, and this one. */
  readonly knownPods: () => Array<PodAddress>
  readonly broadcaster: <Msg>(topicType: TopicType<Msg>) => Broadcaster<Msg>
}

export const makeBroadcast = (state: PodState, receive: Receive): Broadcast => {
  const { client, pods, self, serialization } = state.services

  const knownPods = (): Array<PodAddress> => {
    const result = new Map<string, PodAddress>([[state.selfKey, self]])
    for (let shard = 1; shard <= state.numberOfShards; shard++) {
      const route = state.routing[shard]
      if (route?.pod !== undefined && !result.has(route.podKey)) result.set(route.podKey, route.pod)
    }
    return Array.from(result.values())
  }

  const broadcastTo = (
    topicType: TopicType<unknown>,
    topicId: string,
    message: unknown,
    pod: PodAddress
  ): Effect.Effect<MessageState.MessageState<Exit.Exit<unknown, unknown>>, ShardingException> => {
    const messageId = primaryKeyOf(message)
    if (podKeyOf(pod) === state.selfKey) {
      return receive.deliverLocal(topicType.name, topicId, shardIdOf(topicId, state.numberOfShards), 0, message, messageId)
    }
    return serialization.encode(topicType.schema, message).pipe(
      Effect.flatMap((body) =>
        pods.sendAndGetState(
          pod,
          new SerializedEnvelope({
            recipientAddress: new RecipientAddress({ recipientTypeName: topicType.name, entityId: topicId }),
            messageId: messageId ?? "",
            body,
            epoch: 0
          })
        )
      ),
      Effect.flatMap((reply) => receive.decodeReply(message, reply))
    )
  }

  // The pods to reach, asked when the broadcast runs: every pod the manager knows (a pod that joined a moment
  // ago holds no shard yet, so the routing table does not list it), and those of the routing table. Without
  // the manager, the routing table alone, and a warning that pods may have been missed.
  const targets: Effect.Effect<Array<PodAddress>> = Effect.suspend(() => {
    const getPods = client.getPods
    if (getPods === undefined) return Effect.sync(knownPods)
    return Effect.matchEffect(getPods, {
      onFailure: () =>
        Effect.as(
          Effect.logWarning("broadcast: the shard manager is unreachable; sent to the pods of the routing table"),
          knownPods()
        ),
      onSuccess: (registered) =>
        Effect.sync(() => {
          const result = new Map<string, PodAddress>()
          for (const pod of knownPods()) result.set(podKeyOf(pod), pod)
          for (const pod of registered) result.set(podKeyOf(pod), pod)
          return Array.from(result.values())
        })
    })
  })

  // Validated before anything is sent, as `send` does: a malformed message gets one SerializationException,
  // not a delivery to the sending pod's own (unvalidated, local) instance and an encoding failure elsewhere.
  const validTargets = (
    topicType: TopicType<unknown>,
    message: unknown
  ): Effect.Effect<Array<PodAddress>, ShardingException> =>
    Effect.suspend(() => {
      const invalid = invalidMessage(topicType.schema, message)
      return invalid === undefined ? targets : Effect.fail(invalid)
    })

  const broadcaster = <Msg>(topicType: TopicType<Msg>): Broadcaster<Msg> => ({
    broadcastDiscard: (topicId) => (message) =>
      Effect.flatMap(validTargets(topicType as TopicType<unknown>, message), (pods) =>
        Effect.forEach(
          pods,
          (pod) => Effect.ignore(broadcastTo(topicType as TopicType<unknown>, topicId, message, pod)),
          { concurrency: "unbounded", discard: true }
        )),
    broadcast: (topicId) => (message) =>
      Effect.flatMap(validTargets(topicType as TopicType<unknown>, message), (pods) =>
        Effect.map(
          Effect.forEach(
            pods,
            (pod) =>
              broadcastTo(topicType as TopicType<unknown>, topicId, message, pod).pipe(
                Effect.flatMap((reply) =>
                  MessageState.isProcessed(reply)
                    ? reply.result as Effect.Effect<any, any>
                    : Effect.fail(
                      new EntityNotManagedByThisPodException({
                        recipientAddress: new RecipientAddress({ recipientTypeName: topicType.name, entityId: topicId })
                      })
                    )
                ),
                Effect.either,
                Effect.map((result) => [pod, result] as const)
              ),
            { concurrency: "unbounded" }
          ),
          (entries) => HashMap.fromIterable(entries) as any
        ))
  })

  return { knownPods, broadcaster }
}
