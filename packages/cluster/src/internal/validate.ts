import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { SerializationException } from "../ShardingException.js"

// Prototypes (message classes) whose instances a schema accepts. For a `Schema.Class` the check is an
// `instanceof`, so one accepted instance vouches for every instance of its class: a send of an
// already-constructed message costs a WeakMap lookup, not a validation pass.
const acceptedPrototypes = new WeakMap<Schema.Schema.Any, WeakSet<object>>()

// A class's constructor validated its instance against the schema only when the schema is that class or a
// union of it with others: a filter or transformation the entity type adds around the class (an upper bound,
// say) is not checked by the constructor, so such instances are validated on every send.
const vouchedByConstructor = (schema: Schema.Schema.Any, prototype: object): boolean => {
  const constructor: unknown = (prototype as { readonly constructor?: unknown }).constructor
  if (!Schema.isSchema(constructor)) return false
  const ast = schema.ast
  return ast === constructor.ast || (ast._tag === "Union" && ast.types.includes(constructor.ast))
}

/**
 * Checks a message against its recipient type's schema before it is routed, so a malformed message (a plain
 * object built from untrusted JSON, say) gets the same `SerializationException` whether its entity lives on
 * this pod or on another (where encoding it would fail). `undefined` when the message is valid.
 */
export const invalidMessage = (
  schema: Schema.Schema.Any,
  message: unknown
): SerializationException | undefined => {
  const prototype = typeof message === "object" && message !== null ? Object.getPrototypeOf(message) : null
  const isClassInstance = prototype !== null && prototype !== Object.prototype
  if (isClassInstance && acceptedPrototypes.get(schema)?.has(prototype) === true) return undefined
  const result = ParseResult.validateEither(schema as Schema.Schema<unknown>)(message)
  if (Either.isLeft(result)) {
    return new SerializationException({ error: ParseResult.TreeFormatter.formatIssueSync(result.left), stage: "request" })
  }
  if (isClassInstance && vouchedByConstructor(schema, prototype)) {
    let accepted = acceptedPrototypes.get(schema)
    if (accepted === undefined) {
      accepted = new WeakSet()
      acceptedPrototypes.set(schema, accepted)
    }
    accepted.add(prototype)
  }
  return undefined
}
