/**
 * How message bodies and replies are encoded for the wire.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { successSchemaOf } from "./internal/exitSchema.js"
import * as models from "./internal/models.js"
import * as plainClasses from "./internal/plainClasses.js"
import type { SerializedMessage } from "./SerializedMessage.js"
import { SerializationException } from "./ShardingException.js"

/**
 * Encodes values to `SerializedMessage`s and back, through their schemas.
 *
 * @since 0.1.0
 * @category models
 */
export interface Serialization {
  readonly encode: <A, I>(
    schema: Schema.Schema<A, I>,
    message: A
  ) => Effect.Effect<SerializedMessage, SerializationException>
  readonly decode: <A, I>(
    schema: Schema.Schema<A, I>,
    message: SerializedMessage
  ) => Effect.Effect<A, SerializationException>
}

/**
 * @since 0.1.0
 * @category context
 */
export const Serialization: Context.Tag<Serialization, Serialization> = Context.GenericTag<Serialization>(
  "@effect-cluster/cluster/Serialization"
)

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (impl: Serialization): Serialization => impl

interface Codec {
  readonly encode: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly decode: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
  /** Shortcuts for schemas of plain message classes (`internal/plainClasses.ts`): the same results. */
  readonly encodePlain: plainClasses.Encode | undefined
  readonly decodePlain: plainClasses.Decode | undefined
}

// Codecs are built once per schema; a WeakMap so that schemas built on the fly do not leak.
const codecs = new WeakMap<Schema.Schema<any, any>, Codec>()
const codecFor = (schema: Schema.Schema<any, any>): Codec => {
  let codec = codecs.get(schema)
  if (codec === undefined) {
    const encode = Schema.encodeEither(schema)
    const decode = Schema.decodeUnknownEither(schema)
    // (a string, number or boolean schema: a value it accepts is its own encoding)
    const accepts = plainClasses.primitiveCheckOf(schema)
    codec = {
      encode: accepts === undefined ? encode : (value) => accepts(value) ? Either.right(value) : encode(value),
      decode: accepts === undefined ? decode : (value) => accepts(value) ? Either.right(value) : decode(value),
      encodePlain: plainClasses.encoderOf(schema),
      decodePlain: plainClasses.decoderOf(schema)
    }
    codecs.set(schema, codec)
  }
  return codec
}

/**
 * Encodes synchronously (for hot paths that already run inside an effect).
 *
 * @since 0.1.0
 * @category constructors
 */
export const jsonEncode = <A, I>(schema: Schema.Schema<A, I>, message: A): Either.Either<SerializedMessage, SerializationException> => {
  const success = successSchemaOf(schema)
  if (success !== undefined && Exit.isExit(message) && message._tag === "Success") {
    // A message's successful exit: `{ _tag: "Success", value }` through the success schema alone (the
    // same text as Schema.Exit's). An encoding error takes the general path, for the same message.
    const value = codecFor(success).encode(message.value)
    if (Either.isRight(value)) {
      const text = JSON.stringify({ _tag: "Success", value: value.right })
      if (typeof text === "string") return Either.right(models.serializedMessage(text))
    }
  }
  const codec = codecFor(schema)
  const plain = codec.encodePlain?.(message)
  if (plain !== undefined) return Either.right(models.serializedMessage(JSON.stringify(plain)))
  const encoded = codec.encode(message)
  if (Either.isLeft(encoded)) {
    return Either.left(new SerializationException({ error: ParseResult.TreeFormatter.formatErrorSync(encoded.left), stage: "request" }))
  }
  let text: string | undefined
  try {
    text = JSON.stringify(encoded.right)
  } catch (error) {
    return Either.left(new SerializationException({ error: String(error), stage: "request" }))
  }
  return typeof text === "string"
    ? Either.right(models.serializedMessage(text))
    : Either.left(new SerializationException({ error: "the encoded value has no JSON representation", stage: "request" }))
}

/**
 * Decodes synchronously.
 *
 * @since 0.1.0
 * @category constructors
 */
export const jsonDecode = <A, I>(schema: Schema.Schema<A, I>, message: SerializedMessage): Either.Either<A, SerializationException> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(message.value)
  } catch (error) {
    return Either.left(new SerializationException({ error: `invalid JSON: ${String(error)}`, stage: "request" }))
  }
  const success = successSchemaOf(schema)
  if (success !== undefined && typeof parsed === "object" && parsed !== null && (parsed as any)._tag === "Success") {
    // A successful exit: decoded through the success schema alone, as Schema.Exit would (extra keys
    // ignored); a decoding error takes the general path, for the same message.
    const value = codecFor(success).decode((parsed as any).value)
    if (Either.isRight(value)) return Either.right(Exit.succeed(value.right) as A)
  }
  const codec = codecFor(schema)
  const plain = codec.decodePlain?.(parsed)
  if (plain !== undefined) return Either.right(plain as A)
  const decoded = codec.decode(parsed)
  return Either.isLeft(decoded)
    ? Either.left(new SerializationException({ error: ParseResult.TreeFormatter.formatErrorSync(decoded.left), stage: "request" }))
    : Either.right(decoded.right as A)
}

/**
 * JSON through the schema: `encode` is `JSON.stringify(Schema.encode(schema)(value))`, `decode` the
 * reverse. Codecs are cached per schema.
 *
 * @since 0.1.0
 * @category layers
 */
export const json: Layer.Layer<Serialization> = Layer.succeed(Serialization, {
  encode: (schema, message) => jsonEncode(schema, message),
  decode: (schema, message) => jsonDecode(schema, message)
})
