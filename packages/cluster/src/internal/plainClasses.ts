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
  /** Builds an instance from checked fields (without `_tag` when `ownTag`). */
  readonly make: (fields: Record<string, unknown>) => object
  /** Builds an instance with the constructor. */
  readonly constructorMake: (fields: Record<string, unknown>) => object
  /**
   * The class sets its `_tag` itself (`TaggedClass`, `TaggedRequest`, `TaggedError`: a one-literal field whose
   * constructor default is that literal), so decoding checks `_tag` but does not pass it: the instance is the
   * same, and the constructor skips deleting it from the props (which makes them a slow dictionary).
   */
  readonly ownTag: boolean
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
  // (only a one-literal `_tag`: with more, the input's may differ from the one the constructor sets)
  const tag = ast.from.propertySignatures.find((signature) => signature.name === "_tag")
  const oneLiteral = tag !== undefined && literalsOf(tag.type)?.size === 1
  const recipe = recipeOf(constructor, fields)
  const constructorMake = (props: Record<string, unknown>) => new constructor(props, true)
  if (recipe !== undefined) return { constructor, fields, ownTag: false, make: recipe, constructorMake }
  const ownTag = oneLiteral && setsOwnTag(constructor, fields)
  return { constructor, fields, ownTag, make: constructorMake, constructorMake }
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
): ((fields: Record<string, unknown>) => object) | undefined => {
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
  const names = new Set(fields.map(([name]) => name))
  if (keys.length !== new Set([...names, ...keys]).size) return undefined
  const steps: Array<readonly [key: string, constant: unknown, isField: boolean]> = []
  for (const key of keys) {
    if (typeof key !== "string") return undefined
    const described = [Object.getOwnPropertyDescriptor(first, key)!, Object.getOwnPropertyDescriptor(second, key)!]
    if (described.some((d) => !("value" in d) || !d.writable || !d.enumerable || !d.configurable)) return undefined
    const [a, b] = described.map((d) => d.value)
    if (names.has(key)) {
      if (a !== sample[key] || b !== other[key]) return undefined
      steps.push([key, undefined, true])
    } else {
      if (a !== b || (typeof a === "object" && a !== null) || typeof a === "function") return undefined
      steps.push([key, a, false])
    }
  }
  return (props) => {
    const instance = Object.create(prototype)
    for (let i = 0; i < steps.length; i++) {
      const [key, constant, isField] = steps[i]!
      instance[key] = isField ? props[key] : constant
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

// Whether the class sets its `_tag` (of one literal) itself: an instance made without it is the one made
// with it (same values, same property order), tried once with sample fields. (A tagged class's constructor deletes the
// `_tag` it is given and sets its default; a plain class with a defaulted `_tag` field keeps the given one
// in its place.)
const setsOwnTag = (constructor: PlainClass["constructor"], fields: ReadonlyArray<FieldCheck>): boolean => {
  const tag = fields.find(([name]) => name === "_tag")
  if (tag === undefined) return false
  const withTag: Record<string, unknown> = {}
  const withoutTag: Record<string, unknown> = {}
  for (const [name, , sample] of fields) {
    withTag[name] = sample
    if (name !== "_tag") withoutTag[name] = sample
  }
  try {
    const expected = new constructor(withTag, true) as Record<PropertyKey, unknown>
    const made = new constructor(withoutTag, true) as Record<PropertyKey, unknown>
    const keys = Reflect.ownKeys(expected)
    const madeKeys = Reflect.ownKeys(made)
    return keys.length === madeKeys.length && keys.every((key, i) => madeKeys[i] === key && made[key] === expected[key])
  } catch {
    return false
  }
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

// The fields of `value` as the class encodes them, or undefined when one fails its check; `_tag` is checked
// but left out with `withoutTag`.
const fieldsOf = (
  value: Record<string, unknown>,
  fields: ReadonlyArray<FieldCheck>,
  withoutTag = false
): Record<string, unknown> | undefined => {
  const out: Record<string, unknown> = {}
  for (let i = 0; i < fields.length; i++) {
    const [name, accepts] = fields[i]!
    const field = value[name]
    if (!accepts(field)) return undefined
    if (!withoutTag || name !== "_tag") out[name] = field
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
  return classes !== undefined && classes.every((plain) => plain.make !== plain.constructorMake)
}

/** The decode shortcut of a schema, if it is made of plain classes. */
export const decoderOf = (schema: { readonly ast: SchemaAST.AST }): Decode | undefined => {
  const classes = plainClassesOf(schema)
  if (classes === undefined) return undefined
  return (input) => {
    if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined
    for (let i = 0; i < classes.length; i++) {
      const plain = classes[i]!
      const fields = fieldsOf(input as Record<string, unknown>, plain.fields, plain.ownTag)
      if (fields !== undefined) return plain.make(fields)
    }
    return undefined
  }
}
