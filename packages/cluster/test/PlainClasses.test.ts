/**
 * `Serialization.json` encodes and decodes messages of plain classes (required string, number, boolean and
 * literal fields; or a union of such classes), and values of string, number, boolean and literal schemas
 * (replies' success values), without a parse (`internal/plainClasses.ts`). The results must
 * be the schema's own, for every value: generated instances, and generated bad input (which the schema
 * rejects with its own error).
 */
import { Message, Serialization, SerializedMessage } from "@effect-cluster/cluster"
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck, ParseResult, Schema } from "effect"
import * as plainClasses from "../src/internal/plainClasses.js"

class Point extends Schema.Class<Point>("Point")({ x: Schema.Number, y: Schema.Number, label: Schema.String }) {}
class Toggle extends Schema.TaggedClass<Toggle>()("Toggle", { on: Schema.Boolean, mode: Schema.Literal("a", "b") }) {}
class Ping extends Message.TaggedMessage<Ping>()("Ping", Schema.Never, Schema.Number, { id: Schema.String, n: Schema.Number }, (_) => _.id) {}
class Pong extends Message.TaggedMessage<Pong>()("Pong", Schema.String, Schema.Void, { id: Schema.String, ok: Schema.Boolean }, (_) => _.id) {}
const PingOrPong = Schema.Union(Ping, Pong)
class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}
// A `_tag` field of a plain class: passed to the constructor as it is (with and without a default).
class OwnTag extends Schema.Class<OwnTag>("OwnTag")({ _tag: Schema.Literal("Ping", "Pong"), on: Schema.Boolean }) {
  static _tag = "Ping"
}
// Classes with a body of their own: their constructor must build each instance.
class Counted extends Schema.TaggedClass<Counted>()("Counted", { n: Schema.Number }) {
  static made = 0
  constructor(props: { readonly n: number }, disableValidation?: boolean) {
    super(props, disableValidation)
    Counted.made++
  }
}
class WithPrivate extends Schema.Class<WithPrivate>("WithPrivate")({ a: Schema.String }) {
  readonly #suffix = "!"
  reveal() {
    return this.a + this.#suffix
  }
}
class WithDerived extends Schema.Class<WithDerived>("WithDerived")({ n: Schema.Number }) {
  readonly big = this.n > 100
}
class DefaultTag extends Schema.Class<DefaultTag>("DefaultTag")({ _tag: Schema.tag("Toggle"), on: Schema.Boolean }) {}
// A `_tag` of two literals whose constructor default is one of them (last: made without it, the instance has
// the same keys in the same order): the given `_tag` is kept, whichever it is.
class DefaultOfTwo extends Schema.Class<DefaultOfTwo>("DefaultOfTwo")({
  on: Schema.Boolean,
  _tag: Schema.Literal("Ping", "Pong").pipe(Schema.propertySignature, Schema.withConstructorDefault(() => "Ping" as const))
}) {}
// Not plain: the schema answers alone.
class WithOptional extends Schema.Class<WithOptional>("WithOptional")({ a: Schema.String, b: Schema.optional(Schema.Number) }) {}
class WithRefinement extends Schema.Class<WithRefinement>("WithRefinement")({ a: Schema.NonEmptyString }) {}

// Replies' success schemas: a value they accept is its own encoding.
const Letter = Schema.Literal("a", "b")

const schemas = {
  Point,
  Toggle,
  Ping,
  PingOrPong,
  Refused,
  OwnTag,
  DefaultTag,
  DefaultOfTwo,
  WithOptional,
  WithRefinement,
  String: Schema.String,
  Number: Schema.Number,
  Boolean: Schema.Boolean,
  Letter,
  NonEmptyString: Schema.NonEmptyString
} as const

// Generated JSON-ish input: objects with the fields' names (and others) holding values of any JSON type.
const badInput = FastCheck.oneof(
  FastCheck.record({
    _tag: FastCheck.constantFrom("Ping", "Pong", "Toggle", "Other"),
    id: FastCheck.jsonValue(),
    n: FastCheck.jsonValue(),
    ok: FastCheck.jsonValue(),
    on: FastCheck.jsonValue(),
    mode: FastCheck.constantFrom("a", "b", "c"),
    x: FastCheck.jsonValue(),
    y: FastCheck.jsonValue(),
    label: FastCheck.jsonValue(),
    a: FastCheck.jsonValue()
  }, { requiredKeys: [] }),
  FastCheck.jsonValue(),
  FastCheck.constantFrom("a", "b", "c")
)

// What the schema alone gives (the path the shortcut stands for).
const bySchema = {
  encode: (schema: Schema.Schema<any, any>, value: unknown) =>
    Either.map(Schema.encodeEither(schema)(value), (encoded) => JSON.stringify(encoded)),
  decode: (schema: Schema.Schema<any, any>, text: string) => Schema.decodeUnknownEither(schema)(JSON.parse(text))
}

// jsonDecode of `text` gives what the schema's decode gives: an equal instance of the same class with its
// properties in the same order, or the same error text.
const sameAsSchema = (schema: Schema.Schema<any, any>, text: string) => {
  const decoded = Serialization.jsonDecode(schema, SerializedMessage.make(text))
  const expected = bySchema.decode(schema, text)
  if (Either.isRight(expected)) {
    expect(decoded).toEqual(expected)
    expect(Object.getPrototypeOf(Either.getOrThrow(decoded))).toBe(Object.getPrototypeOf(expected.right))
    if (typeof expected.right === "object" && expected.right !== null) {
      expect(Reflect.ownKeys(Either.getOrThrow(decoded))).toEqual(Reflect.ownKeys(expected.right))
    }
  } else {
    expect(Either.map(Either.flip(decoded), (_) => _.error)).toEqual(Either.right(ParseResult.TreeFormatter.formatErrorSync(expected.left)))
  }
}

describe("plain message classes: Serialization.json's shortcut gives the schema's results", () => {
  it("applies to plain classes and unions of them, not to others", () => {
    for (const schema of [Point, Toggle, Ping, PingOrPong, Refused, OwnTag, DefaultTag, DefaultOfTwo]) {
      expect(plainClasses.encoderOf(schema)).toBeDefined()
      expect(plainClasses.decoderOf(schema)).toBeDefined()
    }
    for (const schema of [WithOptional, WithRefinement, Schema.Union(Ping, WithOptional), Schema.Struct({ a: Schema.String })]) {
      expect(plainClasses.encoderOf(schema)).toBeUndefined()
    }
    for (const schema of [Schema.String, Schema.Number, Schema.Boolean, Letter]) {
      expect(plainClasses.primitiveCheckOf(schema)).toBeDefined()
    }
    for (const schema of [Schema.NonEmptyString, Schema.Literal(1n), Schema.Void, Point]) {
      expect(plainClasses.primitiveCheckOf(schema)).toBeUndefined()
    }
  })

  for (const [name, schema] of Object.entries(schemas)) {
    it(`${name}: generated values encode to the schema's text and decode back to equal instances of the same class`, () =>
      FastCheck.assert(
        FastCheck.property(Arbitrary.make(schema as Schema.Schema<any, any>), (value) => {
          const text = Serialization.jsonEncode(schema as Schema.Schema<any, any>, value)
          expect(Either.map(text, (_) => _.value)).toEqual(bySchema.encode(schema, value))
          sameAsSchema(schema, Either.getOrThrow(text).value)
        }),
        { numRuns: 200 }
      ))

    it(`${name}: generated bad input decodes as the schema decides (the same value or the same error)`, () =>
      FastCheck.assert(
        FastCheck.property(badInput, (input) => {
          sameAsSchema(schema, JSON.stringify(input))
        }),
        { numRuns: 300 }
      ))
  }

  it("a `_tag` other than the constructor's default is decoded as given", () => {
    for (const schema of [DefaultOfTwo, Schema.Union(DefaultOfTwo, Toggle)] as ReadonlyArray<Schema.Schema<any, any>>) {
      const decoded = Serialization.jsonDecode(schema, SerializedMessage.make(`{"on":true,"_tag":"Pong"}`))
      expect(Either.map(decoded, (_: { readonly _tag: string }) => _._tag)).toEqual(Either.right("Pong"))
      sameAsSchema(schema, `{"on":true,"_tag":"Pong"}`)
    }
  })

  it("instances are built without the constructor only for classes whose constructors just set the fields", () => {
    // Schema's classes, Message.TaggedMessage and empty-bodied subclasses of them: no constructor of theirs.
    for (const schema of [Point, Toggle, Ping, PingOrPong, DefaultTag]) {
      expect(plainClasses.buildsWithoutConstructor(schema)).toBe(true)
    }
    // An error (its constructor records a stack), and classes with a body of their own.
    for (const schema of [Refused, OwnTag, Counted, WithPrivate, WithDerived]) {
      expect(plainClasses.buildsWithoutConstructor(schema)).toBe(false)
    }
  })

  it("a class whose body only looks empty at its end (a comment ending with a brace) is built by its constructor", () => {
    // As a compiler that keeps comments (tsc) emits it: a constructor, then a comment ending with `{`.
    const make = (comment: string) =>
      new Function("Base", `return class Commented extends Base {\n  constructor(props, options) {\n    super(props, options)\n    this.extra = 1\n  }\n  ${comment}\n}`)(Point)
    for (const comment of ["// the end {", "/* note */ // {"]) {
      const Commented = make(comment)
      expect(plainClasses.buildsWithoutConstructor(Commented)).toBe(false)
      const decoded: any = Either.getOrThrow(Serialization.jsonDecode(Commented, SerializedMessage.make(`{"x":1,"y":2,"label":"p"}`)))
      expect(decoded.extra).toBe(1)
    }
  })

  it("a class with a constructor, a private field or a derived field of its own is built by its constructor", () => {
    const decodeCounted = () => Either.getOrThrow(Serialization.jsonDecode(Counted, SerializedMessage.make(`{"_tag":"Counted","n":1}`)))
    decodeCounted() // (the first decode also tries the class once or twice to learn its shape)
    const before = Counted.made
    const counted = decodeCounted()
    expect(Counted.made).toBe(before + 1)
    expect(counted).toBeInstanceOf(Counted)
    const secret = Either.getOrThrow(Serialization.jsonDecode(WithPrivate, SerializedMessage.make(`{"a":"x"}`)))
    expect(secret.reveal()).toBe("x!")
    const derived = Either.getOrThrow(Serialization.jsonDecode(WithDerived, SerializedMessage.make(`{"n":200}`)))
    expect(derived.big).toBe(true)
  })

  it("a union whose members one input can match (no _tag of their own, or a shared one) gets the schema's member", () => {
    // (Schema tries first the members whose literal fields match the input, the shortcut its members in order)
    class Loose extends Schema.Class<Loose>("Loose")({ x: Schema.Number }) {}
    class Keyed extends Schema.Class<Keyed>("Keyed")({ k: Schema.Literal("a"), x: Schema.Number }) {}
    class Wide extends Schema.Class<Wide>("Wide")({ k: Schema.Literal("b", "a"), x: Schema.Number, y: Schema.Boolean }) {}
    const cases: ReadonlyArray<readonly [Schema.Schema<any, any>, string]> = [
      [Schema.Union(Loose, Keyed), `{"k":"a","x":1}`],
      [Schema.Union(Wide, Keyed), `{"k":"a","x":1,"y":true}`]
    ]
    for (const [schema, text] of cases) {
      const expected = Schema.decodeUnknownSync(schema)(JSON.parse(text))
      const decoded = Either.getOrThrow(Serialization.jsonDecode(schema, SerializedMessage.make(text)))
      expect(Object.getPrototypeOf(decoded)).toBe(Object.getPrototypeOf(expected))
      expect({ ...decoded }).toEqual({ ...expected })
    }
  })

  it("a class or union whose schema carries parse options (onExcessProperty) gets the schema's answer", () => {
    const fields = Schema.Struct({ a: Schema.String })
    class Preserving extends Schema.Class<Preserving>("Preserving")(fields.annotations({ parseOptions: { onExcessProperty: "preserve" } })) {}
    class Strict extends Schema.Class<Strict>("Strict")(fields.annotations({ parseOptions: { onExcessProperty: "error" } })) {}
    class Tagged extends Schema.TaggedClass<Tagged>()("Tagged", { a: Schema.String }) {}
    const StrictUnion = Schema.Union(Tagged, Toggle).annotations({ parseOptions: { onExcessProperty: "error" } })
    const cases: ReadonlyArray<readonly [Schema.Schema<any, any>, string]> = [
      [Preserving, `{"a":"x","extra":1}`],
      [Strict, `{"a":"x","extra":1}`],
      [StrictUnion, `{"_tag":"Tagged","a":"x","extra":1}`]
    ]
    for (const [schema, text] of cases) {
      const expected = bySchema.decode(schema, text)
      const decoded = Serialization.jsonDecode(schema, SerializedMessage.make(text))
      expect(Either.isRight(decoded)).toBe(Either.isRight(expected))
      if (Either.isRight(decoded) && Either.isRight(expected)) expect(Reflect.ownKeys(decoded.right)).toEqual(Reflect.ownKeys(expected.right))
    }
  })

  it("a Proxy of a Schema class (its construct trap may do more) is built through the Proxy", () => {
    let made = 0
    const Counting = new Proxy(Schema.Class<{ readonly a: string }>("Counting")({ a: Schema.String }), {
      construct: (target, args, newTarget) => {
        made++
        return Reflect.construct(target, args, newTarget)
      }
    })
    const text = `{"a":"x"}`
    Either.getOrThrow(Serialization.jsonDecode(Counting, SerializedMessage.make(text))) // (learns the class)
    const before = made
    const decoded = Either.getOrThrow(Serialization.jsonDecode(Counting, SerializedMessage.make(text)))
    expect(made).toBe(before + 1)
    expect(decoded).toEqual(Schema.decodeUnknownSync(Counting)(JSON.parse(text)))
  })

  it("a schema made from a class (annotated, or a transformation to its type side) is decoded as the schema decodes it", () => {
    // (its value is Schema's generic class, not the message class: its constructor builds no message)
    const annotated = Point.annotations({ description: "a point" })
    const toUpper = Schema.transform(Schema.Struct(Point.fields), Schema.typeSchema(Point), {
      strict: true,
      decode: (fields) => new Point({ ...fields, label: fields.label.toUpperCase() }),
      encode: (point) => ({ ...point })
    })
    const text = `{"x":1,"y":2,"label":"p"}`
    for (const schema of [annotated, toUpper] as ReadonlyArray<Schema.Schema<Point, any>>) {
      const expected = Schema.decodeUnknownSync(schema)(JSON.parse(text))
      const decoded = Either.getOrThrow(Serialization.jsonDecode(schema, SerializedMessage.make(text)))
      expect(Object.getPrototypeOf(decoded)).toBe(Point.prototype)
      expect(Reflect.ownKeys(decoded)).toEqual(Reflect.ownKeys(expected))
      expect({ ...decoded }).toEqual({ ...expected })
    }
  })

  it("an instance whose field was changed after construction, or a look-alike plain object, gets the schema's answer", () => {
    const changed = new Point({ x: 1, y: 2, label: "p" })
    ;(changed as any).x = "one"
    const lookAlike = { x: 1, y: 2, label: "p" }
    for (const value of [changed, lookAlike]) {
      const encoded = Serialization.jsonEncode(Point, value as Point)
      const expected = bySchema.encode(Point, value)
      if (Either.isRight(expected)) expect(Either.map(encoded, (_) => _.value)).toEqual(expected)
      else expect(Either.map(Either.flip(encoded), (_) => _.error)).toEqual(Either.right(ParseResult.TreeFormatter.formatErrorSync(expected.left)))
    }
  })
})
