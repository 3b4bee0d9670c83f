/**
 * At-least-once delivery to entities: a stored message is delivered again until it is processed.
 *
 * @since 0.1.0
 */
export * as AtLeastOnce from "./AtLeastOnce.js"
/**
 * Storage of at-least-once messages: in memory, or SQL (`layer({ table })`, needs `@effect/sql`).
 *
 * @since 0.1.0
 */
export * as AtLeastOnceStorage from "./AtLeastOnceStorage.js"
/**
 * @since 0.1.0
 */
export * as Broadcaster from "./Broadcaster.js"
/**
 * @since 0.1.0
 */
export * as InProcessTransport from "./InProcessTransport.js"
/**
 * @since 0.1.0
 */
export * as ManagerConfig from "./ManagerConfig.js"
/**
 * @since 0.1.0
 */
export * as ManagerLease from "./ManagerLease.js"
/**
 * @since 0.1.0
 */
export * as Message from "./Message.js"
/**
 * @since 0.1.0
 */
export * as MessageState from "./MessageState.js"
/**
 * @since 0.1.0
 */
export * as Messenger from "./Messenger.js"
/**
 * @since 0.1.0
 */
export * as PoisonPill from "./PoisonPill.js"
/**
 * @since 0.1.0
 */
export * as Pod from "./Pod.js"
/**
 * @since 0.1.0
 */
export * as PodAddress from "./PodAddress.js"
/**
 * @since 0.1.0
 */
export * as Pods from "./Pods.js"
/**
 * @since 0.1.0
 */
export * as PodsHealth from "./PodsHealth.js"
/**
 * @since 0.1.0
 */
export * as RecipientAddress from "./RecipientAddress.js"
/**
 * @since 0.1.0
 */
export * as RecipientBehaviour from "./RecipientBehaviour.js"
/**
 * @since 0.1.0
 */
export * as RecipientBehaviourContext from "./RecipientBehaviourContext.js"
/**
 * @since 0.1.0
 */
export * as RecipientType from "./RecipientType.js"
/**
 * @since 0.1.0
 */
export * as Serialization from "./Serialization.js"
/**
 * @since 0.1.0
 */
export * as SerializedEnvelope from "./SerializedEnvelope.js"
/**
 * @since 0.1.0
 */
export * as SerializedMessage from "./SerializedMessage.js"
/**
 * @since 0.1.0
 */
export * as ShardAssignment from "./ShardAssignment.js"
/**
 * @since 0.1.0
 */
export * as ShardId from "./ShardId.js"
/**
 * @since 0.1.0
 */
export * as Sharding from "./Sharding.js"
/**
 * @since 0.1.0
 */
export * as ShardingConfig from "./ShardingConfig.js"
/**
 * @since 0.1.0
 */
export * as ShardingEvent from "./ShardingEvent.js"
/**
 * @since 0.1.0
 */
export * as ShardingException from "./ShardingException.js"
/**
 * @since 0.1.0
 */
export * as ShardingRegistrationEvent from "./ShardingRegistrationEvent.js"
/**
 * @since 0.1.0
 */
export * as ShardManager from "./ShardManager.js"
/**
 * @since 0.1.0
 */
export * as ShardManagerClient from "./ShardManagerClient.js"
/**
 * @since 0.1.0
 */
export * as Storage from "./Storage.js"
/**
 * Background loops that must not end: `restartOnDefect`.
 *
 * @since 0.1.0
 */
export * as Supervise from "./Supervise.js"
