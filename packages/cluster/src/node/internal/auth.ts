/// <reference types="node" />
import * as Crypto from "node:crypto"
import * as Redacted from "effect/Redacted"

/**
 * Call authentication with a shared secret. Each call carries a token derived from the secret (an
 * HMAC-SHA256 of a fixed label), never the secret itself, so a captured or logged token does not reveal a
 * secret that may be used elsewhere. The token is a bearer credential: anyone who reads it can call, which
 * is why calls between machines belong on TLS or a private network (docs/deployment.md).
 */

/** The header carrying the token (lower case: header names are compared in lower case). */
export const AUTH_HEADER = "x-effect-cluster-auth"

/** The token of a secret. */
export const tokenOf = (secret: Redacted.Redacted<string>): string =>
  Crypto.createHmac("sha256", Redacted.value(secret)).update("effect-cluster/transport/v1").digest("base64url")

/** Whether `candidate` is `expected`, in time independent of where they differ. */
export const tokenMatches = (candidate: string, expected: string): boolean => {
  const a = Buffer.from(candidate)
  const b = Buffer.from(expected)
  return a.length === b.length && Crypto.timingSafeEqual(a, b)
}
