import type * as Effect from "effect/Effect"

/**
 * What a behaviour with its own mailbox (`fromInMemoryQueue`) tells the entity manager through its offer
 * function: whether it still has accepted work, whether it can still process, and how to let it finish.
 * Behaviours that handle each message in its `offer` call have none.
 */
export interface InstanceHooks {
  /** No accepted message is waiting or being handled (passivation may stop the instance). */
  readonly idle: () => boolean
  /** The instance can still process messages (its handler fiber is running). */
  readonly alive: () => boolean
  /** Lets the instance finish the messages it accepted, then end; a stop waits for it up to its deadline. */
  readonly drain: Effect.Effect<void>
}

/** The property of an offer function holding its hooks. */
export const hooksKey: unique symbol = Symbol.for("@effect-cluster/cluster/InstanceHooks")

/** Attaches hooks to an offer function. */
export const withHooks = <F extends Function>(offer: F, hooks: InstanceHooks): F =>
  Object.assign(offer, { [hooksKey]: hooks })

/** The hooks of an offer function, if it has any. */
export const hooksOf = (offer: Function): InstanceHooks | undefined =>
  (offer as { [hooksKey]?: InstanceHooks })[hooksKey]
