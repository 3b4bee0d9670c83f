import type * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"

/**
 * Exit schemas of message classes, one per class, each registered with its success schema. With the
 * registration, `Serialization.json` encodes a successful exit as `{ "_tag": "Success", "value": ... }`
 * through the success schema alone, and decodes such a text the same way: the text and the result are
 * those of `Schema.Exit` (a test pins it), without going through its union of success and failure.
 * Failures always take the `Schema.Exit` path.
 */
const byPrototype = new WeakMap<object, Schema.Schema<Exit.Exit<any, any>, any>>()
const successSchemas = new WeakMap<object, Schema.Schema<any, any>>()

/** The exit schema of a message (`Schema.exitSchema`), cached per message class. */
export const exitSchemaOf = (message: object): Schema.Schema<Exit.Exit<any, any>, any> => {
  const prototype = Object.getPrototypeOf(message) as object
  let schema = byPrototype.get(prototype)
  if (schema === undefined) {
    schema = Schema.exitSchema(message as any) as unknown as Schema.Schema<Exit.Exit<any, any>, any>
    successSchemas.set(schema, Schema.successSchema(message as any) as Schema.Schema<any, any>)
    byPrototype.set(prototype, schema)
  }
  return schema
}

/** The success schema of an exit schema built by `exitSchemaOf`. */
export const successSchemaOf = (exitSchema: object): Schema.Schema<any, any> | undefined => successSchemas.get(exitSchema)
