/**
 * Messages: schema'd requests that carry their own success and failure schemas and a primary key.
 *
 * A message class is a `Schema` (so it can be encoded for the network or a journal) whose instances are
 * tagged requests. The primary key (`PrimaryKey.value(message)`) identifies the request: it is the
 * deduplication key of an entity message and the execution id of a workflow.
 *
 * @since 0.1.0
 */
import type * as Exit_ from "effect/Exit"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Schema from "effect/Schema"
import { exitSchemaOf } from "./internal/exitSchema.js"
import { dataClassMark } from "./internal/plainClasses.js"
import type * as Types from "effect/Types"

/**
 * A message: a serializable request with a typed result and a primary key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Message<A, AI, E, EI>
  extends Schema.SerializableWithResult<any, any, never, A, AI, E, EI, never>, PrimaryKey.PrimaryKey
{}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Message {
  /**
   * Any message.
   *
   * @since 0.1.0
   */
  export type Any = Message<any, any, any, any> | Message<any, any, never, never>

  /**
   * The success type of a message.
   *
   * @since 0.1.0
   */
  export type Success<S> = S extends Message<infer A, infer _AI, infer _E, infer _EI> ? A : never

  /**
   * The encoded success type of a message.
   *
   * @since 0.1.0
   */
  export type SuccessEncoded<S> = S extends Message<infer _A, infer AI, infer _E, infer _EI> ? AI : never

  /**
   * The failure type of a message.
   *
   * @since 0.1.0
   */
  export type Error<S> = S extends Message<infer _A, infer _AI, infer E, infer _EI> ? E : never

  /**
   * The encoded failure type of a message.
   *
   * @since 0.1.0
   */
  export type ErrorEncoded<S> = S extends Message<infer _A, infer _AI, infer _E, infer EI> ? EI : never

  /**
   * The exit type of a message.
   *
   * @since 0.1.0
   */
  export type Exit<S> = S extends Message<infer A, infer _AI, infer E, infer _EI> ? Exit_.Exit<A, E> : never
}

/**
 * The success type of a message.
 *
 * @since 0.1.0
 * @category models
 */
export type Success<S> = Message.Success<S>

/**
 * The failure type of a message.
 *
 * @since 0.1.0
 * @category models
 */
export type Error<S> = Message.Error<S>

/**
 * The class returned by `TaggedMessage`: a `Schema` of the message and a constructor of its instances.
 *
 * @since 0.1.0
 * @category models
 */
export interface TaggedMessageConstructor<Tag extends string, Self, R, IS, S, IE, E, IA, A>
  extends Schema.Schema<Self, Types.Simplify<IS & { readonly _tag: Tag }>, R>
{
  new(
    props: Types.Equals<S, {}> extends true ? void : S,
    disableValidation?: boolean
  ): Schema.TaggedRequest<Tag, Self, IS & { readonly _tag: Tag }, R, A, IA, E, IE, never> & S & PrimaryKey.PrimaryKey
  /** The message's tag. */
  readonly _tag: Tag
  /** The schema of the message's success. */
  readonly success: Schema.Schema<A, IA>
  /** The schema of the message's failure. */
  readonly failure: Schema.Schema<E, IE>
  /** The payload fields. */
  readonly fields: Schema.Struct.Fields
  /** Builds a copy of the class with annotations. */
  readonly annotations: (annotations: Schema.Annotations.Schema<Self>) => Schema.Schema<Self, any, R>
}

/**
 * Defines a message class: `TaggedMessage<Self>()(tag, failure, success, payloadFields, idFn)`.
 *
 * The failure schema comes first (the 2024 order). `idFn` gives the primary key of an instance.
 *
 * @example
 * ```ts
 * class GetTotal extends Message.TaggedMessage<GetTotal>()(
 *   "GetTotal", Schema.String, Schema.Number, { orderId: Schema.String }, (_) => _.orderId
 * ) {}
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const TaggedMessage = <Self>() =>
<
  Tag extends string,
  E,
  IE,
  A,
  IA,
  Fields extends Schema.Struct.Fields
>(
  tag: Tag,
  failure: Schema.Schema<E, IE, never>,
  success: Schema.Schema<A, IA, never>,
  fields: Fields,
  messageToId: (message: Schema.Struct.Encoded<Fields>) => string
): TaggedMessageConstructor<
  Tag,
  Self,
  Schema.Schema.Context<Fields[keyof Fields]>,
  Types.Simplify<Schema.Struct.Encoded<Fields>>,
  Types.Simplify<Schema.Struct.Type<Fields>>,
  IE,
  E,
  IA,
  A
> => {
  const Base = Schema.TaggedRequest<{}>()(tag, { failure, success, payload: fields }) as any
  // The primary key is a prototype method (not a closure per instance): building or decoding a message
  // allocates nothing for it.
  // (marked: its constructor only passes the props on, so decoding may build instances without it; see
  // internal/plainClasses)
  return Object.defineProperty(
    class extends Base {
      [PrimaryKey.symbol](): string {
        return messageToId(this as any)
      }
    },
    dataClassMark,
    { value: true }
  ) as any
}

/**
 * Whether a value carries a result schema (`Schema.WithResult`), as every message does.
 *
 * @since 0.1.0
 * @category guards
 */
export const isMessageWithResult = (value: unknown): value is Message<unknown, unknown, unknown, unknown> =>
  typeof value === "object" && value !== null && Schema.symbolWithResult in value

/**
 * The schema of a message's exit.
 *
 * @since 0.1.0
 * @category accessors
 */
export const exitSchema = <A extends Message.Any>(
  message: A
): Schema.Schema<Exit_.Exit<Message.Success<A>, Message.Error<A>>, unknown> => exitSchemaOf(message) as any

/**
 * The schema of a message's failure.
 *
 * @since 0.1.0
 * @category accessors
 */
export const failureSchema = <A extends Message.Any>(
  message: A
): Schema.Schema<Message.Error<A>, unknown> => Schema.failureSchema(message as any) as any

/**
 * The schema of a message's success.
 *
 * @since 0.1.0
 * @category accessors
 */
export const successSchema = <A extends Message.Any>(
  message: A
): Schema.Schema<Message.Success<A>, unknown> => Schema.successSchema(message as any) as any
