/**
 * Encoding of recorded exits: the one place where journal JSON meets the user's schemas.
 *
 * A recorded exit is one of
 *   { "_tag": "Success", "value": <encoded success> }
 *   { "_tag": "Failure", "error": <encoded failure> }
 *   { "_tag": "Die", "defect": { "name", "message", "stack"?, "error"? } }
 *   { "_tag": "Interrupt" }                 (only as the result of a cancelled execution)
 * Codecs are built once per (success, failure) schema pair and cached in a WeakMap keyed by the schemas,
 * so activities built on every call (as in the 2024 examples) neither rebuild codecs nor leak them.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import type * as Schema from "effect/Schema"
import { WorkflowEngineError } from "../WorkflowError.js"

/** @internal */
export interface ExitCodec<A, E> {
  /** JSON text of the exit, or undefined for an interruption (never recorded as a result). */
  readonly encode: (exit: Exit.Exit<A, E>) => Either.Either<string | undefined, string>
  readonly decode: (json: string) => Either.Either<Exit.Exit<A, E>, string>
  readonly encodeSuccess: (value: A) => Either.Either<string, string>
}

interface EncodedDefect {
  readonly name: string
  readonly message: string
  readonly stack?: string
  /** An engine fault, encoded with its schema so it replays as its class. */
  readonly error?: unknown
}

const encodeEngineError = ParseResult.encodeEither(WorkflowEngineError)
const decodeEngineError = ParseResult.decodeUnknownEither(WorkflowEngineError)

/** @internal */
export const encodeDefect = (defect: unknown): EncodedDefect => {
  const engineError = encodeEngineError(defect as any)
  if (Either.isRight(engineError) && defect instanceof Error) {
    return { name: defect.name, message: defect.message, error: engineError.right }
  }
  if (defect instanceof Error) {
    return defect.stack === undefined
      ? { name: defect.name, message: defect.message }
      : { name: defect.name, message: defect.message, stack: defect.stack }
  }
  let message: string
  try {
    message = typeof defect === "string" ? defect : JSON.stringify(defect) ?? String(defect)
  } catch {
    message = String(defect)
  }
  return { name: "UnknownDefect", message }
}

/** @internal */
export const decodeDefect = (encoded: EncodedDefect): unknown => {
  if (encoded.error !== undefined) {
    const decoded = decodeEngineError(encoded.error)
    if (Either.isRight(decoded)) return decoded.right
  }
  const error = new Error(encoded.message)
  error.name = encoded.name
  if (encoded.stack !== undefined) error.stack = encoded.stack
  return error
}

const isEncodedDefect = (u: unknown): u is EncodedDefect =>
  typeof u === "object" && u !== null && typeof (u as any).name === "string" &&
  typeof (u as any).message === "string"

const cache = new WeakMap<Schema.Schema.Any, WeakMap<Schema.Schema.Any, ExitCodec<any, any>>>()

const formatError = (issue: ParseResult.ParseIssue) => ParseResult.TreeFormatter.formatIssueSync(issue)

/** @internal */
export const exitCodec = <A, IA, E, IE>(
  success: Schema.Schema<A, IA, never>,
  failure: Schema.Schema<E, IE, never>
): ExitCodec<A, E> => {
  let byFailure = cache.get(success)
  if (byFailure === undefined) {
    byFailure = new WeakMap()
    cache.set(success, byFailure)
  }
  const cached = byFailure.get(failure)
  if (cached !== undefined) return cached
  const encodeA = ParseResult.encodeEither(success)
  const encodeE = ParseResult.encodeEither(failure)
  const decodeA = ParseResult.decodeUnknownEither(success)
  const decodeE = ParseResult.decodeUnknownEither(failure)
  const codec: ExitCodec<A, E> = {
    encodeSuccess: (value) => Either.map(Either.mapLeft(encodeA(value), formatError), (v) => JSON.stringify({ _tag: "Success", value: v })),
    encode: (exit) => {
      if (Exit.isSuccess(exit)) {
        return Either.map(
          Either.mapLeft(encodeA(exit.value), formatError),
          (value) => JSON.stringify({ _tag: "Success", value })
        )
      }
      const failureValue = Cause.failureOption(exit.cause)
      if (Option.isSome(failureValue)) {
        return Either.map(
          Either.mapLeft(encodeE(failureValue.value), formatError),
          (error) => JSON.stringify({ _tag: "Failure", error })
        )
      }
      const defect = Cause.dieOption(exit.cause)
      if (Option.isSome(defect)) {
        return Either.right(JSON.stringify({ _tag: "Die", defect: encodeDefect(defect.value) }))
      }
      return Either.right(undefined)
    },
    decode: (json) => {
      let parsed: any
      try {
        parsed = JSON.parse(json)
      } catch (e) {
        return Either.left(`invalid JSON: ${String(e)}`)
      }
      switch (parsed?._tag) {
        case "Success":
          return Either.map(Either.mapLeft(decodeA(parsed.value), formatError), Exit.succeed)
        case "Failure":
          return Either.map(Either.mapLeft(decodeE(parsed.error), formatError), Exit.fail)
        case "Die":
          return isEncodedDefect(parsed.defect)
            ? Either.right(Exit.die(decodeDefect(parsed.defect)))
            : Either.left("invalid defect")
        case "Interrupt":
          return Either.right(Exit.interrupt(FiberId.none) as Exit.Exit<A, E>)
        default:
          return Either.left(`unknown exit tag ${String(parsed?._tag)}`)
      }
    }
  }
  byFailure.set(failure, codec)
  return codec
}

/** @internal */
export const interruptJson = JSON.stringify({ _tag: "Interrupt" })

/** @internal */
export const dieJson = (defect: unknown): string => JSON.stringify({ _tag: "Die", defect: encodeDefect(defect) })

/** @internal */
export const voidJson = JSON.stringify({ _tag: "Success", value: null })

/**
 * A short, stable, non-cryptographic hash (FNV-1a 64 via two 32-bit lanes) of the encoded payload, hex.
 * It is stored beside the payload and only rejects a different payload quickly: identity is decided by
 * `samePayload`, which compares the payload itself (two payloads can share a 64-bit hash).
 *
 * @internal
 */
export const payloadHash = (text: string): string => {
  let h1 = 0x811c9dc5
  let h2 = 0x01000193 ^ text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 0x01000193)
    h2 = Math.imul(h2 ^ c, 0x5bd1e995)
    h2 ^= h2 >>> 15
  }
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0")
}

/**
 * Whether a stored payload (with its hash) is the one sent: the hashes first (a cheap rejection), then the
 * encoded text itself, so that a hash collision is never taken for the same payload.
 *
 * @internal
 */
export const samePayload = (
  stored: { readonly payload: string; readonly payloadHash: string },
  payload: string,
  hash: string
): boolean => stored.payloadHash === hash && stored.payload === payload
