/**
 * The message a mailbox entity (`RecipientBehaviour.fromInMemoryQueue`) receives when it must stop.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { typeIdField } from "./internal/typeId.js"

/**
 * The type id of a `PoisonPill`: the symbol-keyed property every pill carries (its value is the symbol).
 * Encoded as the 2024 string key `"@effect/cluster/PoisonPill": "@effect/cluster/PoisonPill"`.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@effect-cluster/cluster/PoisonPill")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

/**
 * Asks a mailbox entity to finish: it is offered when the entity is stopped (shard moved, pod shutting
 * down, passivation), and the entity's scope waits (up to `entityTerminationTimeout`) for the handler to
 * return. Its `_tag` (`"@effect/cluster/PoisonPill"`, on the prototype, not encoded) tells it apart in a
 * `Dequeue<Msg | PoisonPill>`. Encoded as in 2024, `{ "@effect/cluster/PoisonPill": "@effect/cluster/PoisonPill" }`;
 * decoding also accepts `{ _tag: "@effect/cluster/PoisonPill" }`, the form this package wrote before.
 *
 * @since 0.1.0
 * @category models
 */
export class PoisonPill extends Schema.Class<PoisonPill>("@effect-cluster/cluster/PoisonPill")({
  [TypeId]: typeIdField(TypeId, "@effect/cluster/PoisonPill")
}) {
  /**
   * @since 0.1.0
   */
  get _tag(): "@effect/cluster/PoisonPill" {
    return "@effect/cluster/PoisonPill"
  }

  /**
   * @since 0.1.0
   */
  override toString(): string {
    return "PoisonPill"
  }
}

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
export const schema: Schema.Schema<PoisonPill, Schema.Schema.Encoded<typeof PoisonPill>> = PoisonPill

/**
 * Takes the next message; if it is a `PoisonPill`, interrupts the calling fiber instead.
 *
 * @since 0.1.0
 * @category combinators
 */
export const takeOrInterrupt = <Req>(dequeue: Queue.Dequeue<Req | PoisonPill>): Effect.Effect<Req> =>
  Effect.flatMap(Queue.take(dequeue), (message) => isPoisonPill(message) ? Effect.interrupt : Effect.succeed(message))
