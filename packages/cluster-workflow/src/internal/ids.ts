/**
 * Which execution ids the journals can store: the same rule for every journal, so an id that PostgreSQL
 * would refuse is refused in memory and on SQLite too, at the API, before it reaches a group commit.
 *
 * @internal
 */

/**
 * The most UTF-8 bytes of an execution id. PostgreSQL refuses a b-tree index entry over about 2,700
 * bytes, and the journal's keys hold the workflow name and the id (and, for signals, the signal name).
 *
 * @internal
 */
export const maxIdBytes = 1024

const encoder = new TextEncoder()

const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/**
 * Why an id cannot be stored, or undefined when it can: U+0000 (PostgreSQL text cannot hold it), an
 * unpaired surrogate (not valid Unicode text), or more than `maxIdBytes` UTF-8 bytes.
 *
 * @internal
 */
export const invalidIdReason = (id: string): string | undefined => {
  if (id.includes("\u0000")) return "it contains U+0000 (NUL), which a database text column cannot hold"
  if (loneSurrogate.test(id)) return "it contains an unpaired UTF-16 surrogate (not valid Unicode text)"
  const bytes = encoder.encode(id).length
  if (bytes > maxIdBytes) return `it is ${bytes} bytes long in UTF-8; the journal stores ids of at most ${maxIdBytes}`
  return undefined
}
