import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * The type-id property of the 2024 models: a symbol-keyed property whose value is the symbol, encoded as
 * the string key `"@effect/cluster/<Name>": "@effect/cluster/<Name>"`. Decoding also accepts a value
 * without the key (the form this package wrote before it carried one); constructors fill it in.
 */
export const typeIdField = <const Id extends symbol, const Key extends string>(typeId: Id, key: Key) =>
  Schema.optionalToRequired(Schema.Literal(key), Schema.UniqueSymbolFromSelf(typeId), {
    decode: (): Id => typeId,
    encode: (): Option.Option<Key> => Option.some(key)
  }).pipe(Schema.fromKey(key), Schema.withConstructorDefault((): Id => typeId))
