import * as Data from "effect/Data"
import * as Request from "effect/Request"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"

/**
 * Shortcuts for the common message schema: a `Schema.Class` (or `TaggedClass`, `TaggedRequest`, a message
 * class) whose fields are all required strings, numbers, booleans or literals (or unions of literals), or a
 * union of such classes. Such a field encodes and decodes as itself, so `Schema.encode` of an instance is the
 * object of its fields in the schema's order, and `Schema.decode` of such an object is
 * `new Class(fields, true)` (no validation pass: the fields were checked). The shortcuts check each field
 * with `typeof` or a set of literals and give up (`undefined`) on anything else, so that the schema itself
 * answers, with its own errors: the result is always the schema's.
 */

/**
 * A field's name, the test its value passes exactly when the field's schema accepts it, and two values it
 * accepts (different ones when it accepts more than one).
 */
type FieldCheck = readonly [name: string, accepts: (value: unknown) => boolean, sample: unknown, other: unknown]

interface PlainClass {
  readonly constructor: new(props: object, disableValidation: boolean) => object
  readonly fields: ReadonlyArray<FieldCheck>
  /** Checks a parsed JSON object's fields and builds the instance, or `undefined` when a field fails. */
  readonly decode: (input: Record<string, unknown>) => object | undefined
  /** Whether `decode` builds instances without the constructor (see `recipeOf`). */
  readonly withoutConstructor: boolean
}

/** Encodes a value, or `undefined` when the shortcut does not apply. */
export type Encode = (value: unknown) => object | undefined
/** Decodes a parsed JSON value, or `undefined` when the shortcut does not apply. */
export type Decode = (input: unknown) => object | undefined

const isString = (value: unknown) => typeof value === "string"
const isNumber = (value: unknown) => typeof value === "number"
const isBoolean = (value: unknown) => typeof value === "boolean"

// The literals of a literal or a union of literals (a bigint has no JSON form: the schema reports it).
const literalsOf = (type: SchemaAST.AST): ReadonlySet<unknown> | undefined => {
  const types = type._tag === "Union" ? type.types : [type]
  const literals = new Set<unknown>()
  for (const member of types) {
    if (member._tag !== "Literal" || typeof member.literal === "bigint") return undefined
    literals.add(member.literal)
  }
  return literals
}

const fieldCheck = (signature: SchemaAST.PropertySignature): FieldCheck | undefined => {
  if (signature.isOptional || typeof signature.name !== "string") return undefined
  const type = signature.type
  switch (type._tag) {
    case "StringKeyword":
      return [signature.name, isString, "", "x"]
    case "NumberKeyword":
      return [signature.name, isNumber, 0, 1]
    case "BooleanKeyword":
      return [signature.name, isBoolean, false, true]
    default: {
      const literals = literalsOf(type)
      if (literals === undefined) return undefined
      const [first, second = first] = literals
      return [signature.name, (value) => literals.has(value), first, second]
    }
  }
}

/**
 * The test of a schema that is a string, number or boolean, or literals: a value it accepts encodes and
 * decodes as itself (a reply's success schema, mostly). `undefined` for any other schema.
 */
export const primitiveCheckOf = (schema: { readonly ast: SchemaAST.AST }): ((value: unknown) => boolean) | undefined => {
  const check = fieldCheck({ name: "", isOptional: false, type: schema.ast } as SchemaAST.PropertySignature)
  return check?.[1]
}

// Parse options in a schema's annotations (`onExcessProperty: "preserve"` keeps, `"error"` refuses, the input's
// other properties): its decoding is not the one the shortcut gives.
const hasParseOptions = (ast: SchemaAST.AST): boolean => ast.annotations[SchemaAST.ParseOptionsAnnotationId] !== undefined

// A class schema (the schema value is the class): a transformation from its fields (a struct) to the
// class's declaration.
const plainClass = (ast: SchemaAST.AST, schema: unknown): PlainClass | undefined => {
  if (typeof schema !== "function" || ast._tag !== "Transformation" || !isSchemaClass(schema)) return undefined
  if (ast.to._tag !== "Declaration" || ast.from._tag !== "TypeLiteral" || ast.from.indexSignatures.length > 0) {
    return undefined
  }
  if (hasParseOptions(ast) || hasParseOptions(ast.from) || hasParseOptions(ast.to)) return undefined
  const fields: Array<FieldCheck> = []
  for (const signature of ast.from.propertySignatures) {
    const check = fieldCheck(signature)
    if (check === undefined) return undefined
    fields.push(check)
  }
  const constructor = schema as PlainClass["constructor"]
  const recipe = recipeOf(constructor, fields)
  if (recipe !== undefined) return { constructor, fields, decode: recipe, withoutConstructor: true }
  const decode = (input: Record<string, unknown>) => {
    const props = fieldsOf(input, fields)
    return props === undefined ? undefined : new constructor(props, true)
  }
  return { constructor, fields, decode, withoutConstructor: false }
}

// A class made by `Schema.Class` (or a tagged variant, or `extend`), or a subclass of one: its chain holds
// Schema's generated class (its own `fields` and `extend`), whose `ast` decodes with `new this(fields, true)`.
// A schema made from a class (`Class.annotations(...)`, a `transform` to `typeSchema(Class)`) has the class's
// declaration in its AST, but its value is Schema's generic class: its constructor builds no instance of the
// class, and its decoding may do more than construct.
const isSchemaClass = (schema: Function): boolean => {
  for (let c: unknown = schema; typeof c === "function"; c = Object.getPrototypeOf(c)) {
    if (Object.hasOwn(c, Schema.TypeId) && Object.hasOwn(c, "fields") && Object.hasOwn(c, "extend")) return true
  }
  return false
}

/**
 * Instances of a data class built without its constructor: `Object.create` of its prototype and its
 * properties set in the order the constructor sets them (the constructor of a message class costs several
 * times the rest of its decoding). Only for a class whose constructors do nothing else, which is checked:
 * every class of its chain is one of Schema's (`Schema.Class` and its tagged variants), this package's
 * `Message.TaggedMessage`, Effect's `Data.Class` or `Request.Class`, or a class with an empty body (so no
 * constructor, field or private field of its own); and instances the constructor builds from two sets of
 * sample fields are plain data objects whose properties are the fields as given, in one order, plus
 * constants (`_tag`). `undefined` when any of this does not hold: the constructor builds each instance.
 */
const recipeOf = (
  constructor: PlainClass["constructor"],
  fields: ReadonlyArray<FieldCheck>
): PlainClass["decode"] | undefined => {
  for (let c: unknown = constructor; c !== Function.prototype && c !== null; c = Object.getPrototypeOf(c)) {
    if (!isDataConstructor(c)) return undefined
  }
  const sample: Record<string, unknown> = {}
  const other: Record<string, unknown> = {}
  for (const [name, , a, b] of fields) {
    sample[name] = a
    other[name] = b
  }
  let first: object, second: object
  try {
    first = new constructor({ ...sample }, true)
    second = new constructor({ ...other }, true)
  } catch {
    return undefined
  }
  const prototype = constructor.prototype as object
  if (Object.getPrototypeOf(first) !== prototype || Object.getPrototypeOf(second) !== prototype) return undefined
  const keys = Reflect.ownKeys(first)
  const otherKeys = Reflect.ownKeys(second)
  if (keys.length !== otherKeys.length || keys.some((key, i) => otherKeys[i] !== key)) return undefined
  // (every field is a property: each is then checked by a step)
  if (keys.length !== new Set([...fields.map(([name]) => name), ...keys]).size) return undefined
  // One step per property, in the constructor's order: a field's check (its value comes from the input), or
  // a constant.
  const steps: Array<readonly [key: string, accepts: ((value: unknown) => boolean) | undefined, constant: unknown]> = []
  for (const key of keys) {
    if (typeof key !== "string") return undefined
    const described = [Object.getOwnPropertyDescriptor(first, key)!, Object.getOwnPropertyDescriptor(second, key)!]
    if (described.some((d) => !("value" in d) || !d.writable || !d.enumerable || !d.configurable)) return undefined
    const [a, b] = described.map((d) => d.value)
    const field = fields.find(([name]) => name === key)
    if (field !== undefined) {
      if (a !== sample[key] || b !== other[key]) return undefined
      steps.push([key, field[1], undefined])
    } else {
      if (a !== b || (typeof a === "object" && a !== null) || typeof a === "function") return undefined
      steps.push([key, undefined, a])
    }
  }
  // Checks and builds in one pass (no intermediate object of the fields).
  return (input) => {
    const instance = Object.create(prototype)
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!
      const accepts = step[1]
      if (accepts === undefined) {
        instance[step[0]] = step[2]
      } else {
        const value = input[step[0]]
        if (!accepts(value)) return undefined
        instance[step[0]] = value
      }
    }
    return instance
  }
}

// The sources of Schema's tagged wrapper classes (one source each, whatever the tag), made once.
let wrapperSources: ReadonlySet<string> | undefined
const schemaWrapperSources = (): ReadonlySet<string> =>
  wrapperSources ??= new Set(
    [
      Schema.TaggedClass<any>()("_", {}),
      Schema.TaggedError<any>()("_", {}),
      Schema.TaggedRequest<any>()("_", { failure: Schema.Never, success: Schema.Void, payload: {} })
    ].map((c) => Function.prototype.toString.call(c))
  )

/** Marks a class whose constructor only passes its props on (`Message.TaggedMessage`'s). */
export const dataClassMark: unique symbol = Symbol.for("@effect-cluster/cluster/plainClasses/dataClass")

// A class of a chain whose constructor does nothing but set the props it is given (see `recipeOf`).
const isDataConstructor = (c: unknown): boolean => {
  if (typeof c !== "function") return false
  if (c === Data.Class || c === Request.Class) return true
  // (a class's source; a Proxy of a class shows as native code, and answers `hasOwn` for its target while its
  // construct trap may do anything)
  const source = Function.prototype.toString.call(c)
  if (!source.startsWith("class")) return false
  if (Object.hasOwn(c, Schema.TypeId) || Object.hasOwn(c, dataClassMark)) return true
  return schemaWrapperSources().has(source) || hasEmptyBody(source)
}

// The end of a class whose body is empty, or holds only the static block esbuild adds to keep a class's
// name (`static { __name(this, "Ping") }`, as tsx and bundlers with `keepNames` emit). A non-empty body
// ends with a member, never with `{`, unless a line comment ends with it (compilers that keep comments):
// the brace must not be on a line comment. (A block comment cannot end at that brace: it would be unclosed.)
const emptyBody = /\{\s*(?:static\s*\{\s*__name\(\s*this\s*,\s*"[\w$]*"\s*\)\s*;?\s*\}\s*)?\}$/

const hasEmptyBody = (source: string): boolean => {
  const match = emptyBody.exec(source)
  if (match === null) return false
  const before = source.slice(0, match.index)
  return !before.slice(before.lastIndexOf("\n") + 1).includes("//")
}

// The schema's plain classes (itself, or every member of its union), or undefined.
const plainClassesOf = (schema: { readonly ast: SchemaAST.AST }): ReadonlyArray<PlainClass> | undefined => {
  const single = plainClass(schema.ast, schema)
  if (single !== undefined) return [single]
  const members = (schema as { readonly members?: ReadonlyArray<{ readonly ast: SchemaAST.AST }> }).members
  if (schema.ast._tag !== "Union" || !Array.isArray(members) || members.length === 0) return undefined
  if (hasParseOptions(schema.ast)) return undefined
  // Only members told apart by their `_tag`s (literals, none shared): an input then matches one member at most,
  // the one Schema's union decodes it with. (Schema tries first the members whose literal fields match the
  // input, so with an input two members accept, it may pick another than the first.)
  const classes: Array<PlainClass> = []
  const tags = new Set<unknown>()
  for (const member of members) {
    const plain = plainClass(member.ast, member)
    if (plain === undefined) return undefined
    const from = (member.ast as SchemaAST.Transformation).from as SchemaAST.TypeLiteral
    const tag = from.propertySignatures.find((signature) => signature.name === "_tag")
    const literals = tag === undefined ? undefined : literalsOf(tag.type)
    if (literals === undefined) return undefined
    for (const literal of literals) {
      if (tags.has(literal)) return undefined
      tags.add(literal)
    }
    classes.push(plain)
  }
  return classes
}

// The fields of `value` as the class encodes them, or undefined when one fails its check.
const fieldsOf = (value: Record<string, unknown>, fields: ReadonlyArray<FieldCheck>): Record<string, unknown> | undefined => {
  const out: Record<string, unknown> = {}
  for (let i = 0; i < fields.length; i++) {
    const [name, accepts] = fields[i]!
    const field = value[name]
    if (!accepts(field)) return undefined
    out[name] = field
  }
  return out
}

/** The encode shortcut of a schema, if it is made of plain classes. */
export const encoderOf = (schema: { readonly ast: SchemaAST.AST }): Encode | undefined => {
  const classes = plainClassesOf(schema)
  if (classes === undefined) return undefined
  return (value) => {
    for (let i = 0; i < classes.length; i++) {
      const plain = classes[i]!
      // (an instance of another class of the union, or a plain object: the schema decides)
      if (value instanceof plain.constructor) return fieldsOf(value as Record<string, unknown>, plain.fields)
    }
    return undefined
  }
}

/** Whether decoding builds the schema's instances without their constructor (every class of it qualifies). */
export const buildsWithoutConstructor = (schema: { readonly ast: SchemaAST.AST }): boolean => {
  const classes = plainClassesOf(schema)
  return classes !== undefined && classes.every((plain) => plain.withoutConstructor)
}

/** The decode shortcut of a schema, if it is made of plain classes. */
export const decoderOf = (schema: { readonly ast: SchemaAST.AST }): Decode | undefined => {
  const classes = plainClassesOf(schema)
  if (classes === undefined) return undefined
  return (input) => {
    if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined
    for (let i = 0; i < classes.length; i++) {
      const decoded = classes[i]!.decode(input as Record<string, unknown>)
      if (decoded !== undefined) return decoded
    }
    return undefined
  }
}
