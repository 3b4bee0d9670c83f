/**
 * At-least-once delivery to entities (2024 name): wrap a behaviour with `atLeastOnceRecipientBehaviour`
 * and run `runPendingMessageSweeperScoped` on every pod, with an `AtLeastOnceStorage` in context.
 *
 * What it guarantees: a message the entity has accepted is stored (in `AtLeastOnceStorage`) before the
 * entity sees it, and is delivered again by the sweeper of the pod that holds its shard until the entity
 * answers `Processed` for it. So a message is processed at least once even if its pod crashes, its entity
 * fails or answers `Acknowledged` and forgets it. Handlers must therefore be idempotent (deduplicate by the
 * message's primary key). What it does not cover: a message that never reached the receiving pod (the
 * sender's `send` then fails with a typed error and the sender retries), and ordering of re-sent messages.
 *
 * Differences from 2024: a message that could not be stored is not delivered (the offer fails with
 * `ExceptionWhileOfferingMessageException`, so the sender learns it), where 2024 logged the error and
 * delivered it unprotected; the sweep re-sends every pending message of the pod's shards (2024's SQL sweep
 * expected exactly one row per shard); one message that fails to re-send does not stop the sweep of the
 * others.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashSet from "effect/HashSet"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { AtLeastOnceStorage } from "./AtLeastOnceStorage.js"
import type * as Message from "./Message.js"
import * as MessageState from "./MessageState.js"
import type { RecipientBehaviour } from "./RecipientBehaviour.js"
import { RecipientBehaviourContext } from "./RecipientBehaviourContext.js"
import { Sharding } from "./Sharding.js"
import { ExceptionWhileOfferingMessageException } from "./ShardingException.js"

/**
 * Wraps a behaviour so that every message offered to it is first stored in `AtLeastOnceStorage` (a message
 * already stored stays as it is), then offered; when the offer answers `Processed`, the message is marked
 * processed. If storing fails, the message is not offered and the offer fails with
 * `ExceptionWhileOfferingMessageException`. If marking fails, the reply is still returned and the failure
 * logged: the message stays pending, and the sweeper delivers it again.
 *
 * @since 0.1.0
 * @category constructors
 */
export const atLeastOnceRecipientBehaviour = <Msg extends Message.Message.Any, R>(
  behaviour: RecipientBehaviour<Msg, R>
): RecipientBehaviour<Msg, R | AtLeastOnceStorage> =>
  Effect.gen(function*() {
    const storage = yield* AtLeastOnceStorage
    const self = yield* RecipientBehaviourContext
    const recipientType = self.recipientType
    const entityId = self.recipientAddress.entityId
    const offer = yield* behaviour
    return <A extends Msg>(message: A) =>
      storage.upsert(recipientType, self.shardId, entityId, message).pipe(
        Effect.mapError((error) =>
          new ExceptionWhileOfferingMessageException({
            error: `the message was not stored for at-least-once delivery, so it was not delivered: ${error.message}`
          })
        ),
        Effect.zipRight(offer(message)),
        Effect.tap((state) =>
          MessageState.isProcessed(state)
            ? storage.markAsProcessed(recipientType, self.shardId, entityId, message).pipe(
              Effect.catchAll((error) =>
                Effect.logWarning("AtLeastOnce: could not mark a message processed; it will be delivered again", error)
              )
            )
            : Effect.void
        )
      )
  })

/**
 * Forks, in the current scope, a loop that every `interval` re-sends the unprocessed stored messages of
 * the shards this pod holds to their entities on this pod (`sendMessageToLocalEntityManagerWithoutRetries`).
 * A message whose re-send fails is logged and left pending for the next round; a failing sweep is logged
 * and the loop goes on. Runs on the Effect `Clock`, so `TestClock` drives it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runPendingMessageSweeperScoped = (
  interval: Duration.DurationInput
): Effect.Effect<void, never, AtLeastOnceStorage | Sharding | Scope.Scope> =>
  Effect.gen(function*() {
    const storage = yield* AtLeastOnceStorage
    const sharding = yield* Sharding
    const sweep = Effect.flatMap(sharding.getAssignedShardIds, (shards) =>
      HashSet.size(shards) === 0
        ? Effect.void
        : Stream.runForEach(storage.sweepPending(shards), (envelope) =>
          sharding.sendMessageToLocalEntityManagerWithoutRetries(envelope).pipe(
            Effect.catchAllCause((cause) =>
              Effect.logWarning("AtLeastOnce: re-sending a pending message failed; it stays pending", cause).pipe(
                Effect.annotateLogs({ messageId: envelope.messageId })
              )
            )
          )))
    yield* sweep.pipe(
      Effect.catchAllCause((cause) => Effect.logError("AtLeastOnce: the pending-message sweep failed", cause)),
      Effect.delay(interval),
      Effect.forever,
      Effect.annotateLogs({ service: "AtLeastOnce.sweeper" }),
      Effect.forkScoped
    )
  })
