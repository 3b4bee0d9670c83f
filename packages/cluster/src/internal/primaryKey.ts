import * as PrimaryKey from "effect/PrimaryKey"

/** The message's primary key, or undefined for messages without one (they are not deduplicated). */
export const primaryKeyOf = (message: unknown): string | undefined =>
  typeof message === "object" && message !== null && PrimaryKey.symbol in message
    ? PrimaryKey.value(message as PrimaryKey.PrimaryKey)
    : undefined
