/**
 * The message a mailbox entity (`RecipientBehaviour.fromInMemoryQueue`) receives when it must stop.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"

/**
 * Asks a mailbox entity to finish: it is offered when the entity is stopped (shard moved, pod shutting
 * down, passivation), and the entity's scope waits (up to `entityTerminationTimeout`) for the handler to
 * return.
 *
 * @since 0.1.0
 * @category models
 */
export class PoisonPill extends Schema.TaggedClass<PoisonPill>()("@effect/cluster/PoisonPill", {}) {}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<PoisonPill> = Effect.sync(() => new PoisonPill())

/**
 * @since 0.1.0
 * @category guards
 */
export const isPoisonPill = (u: unknown): u is PoisonPill => Predicate.isObject(u) && u instanceof PoisonPill

/**
 * @since 0.1.0
 * @category schemas
 */
export const schema: Schema.Schema<PoisonPill, { readonly _tag: "@effect/cluster/PoisonPill" }> = PoisonPill

/**
 * Takes the next message; if it is a `PoisonPill`, interrupts the calling fiber instead.
 *
 * @since 0.1.0
 * @category combinators
 */
export const takeOrInterrupt = <Req>(dequeue: Queue.Dequeue<Req | PoisonPill>): Effect.Effect<Req> =>
  Effect.flatMap(Queue.take(dequeue), (message) => isPoisonPill(message) ? Effect.interrupt : Effect.succeed(message))
