/**
 * TLS between pods and the manager, wired as docs/deployment.md says: each server gets `https` options
 * (key and certificate), each client `tls: true` (`wss://`), and a private certificate is trusted through
 * NODE_EXTRA_CA_CERTS. A child process (test/process/tlsChild.ts) runs a manager and two pods on a
 * self-signed certificate for 127.0.0.1 made here with openssl: trusted, messages route between the pods;
 * not trusted, the pods refuse the manager's certificate.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { cleanUpChildren, spawnChild } from "./process/harness.js"

afterAll(() => cleanUpChildren())

/** A self-signed certificate for 127.0.0.1 and localhost, in a temporary directory removed with the scope. */
const selfSigned = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(join(tmpdir(), "cluster-tls-"))
    const key = join(dir, "key.pem")
    const cert = join(dir, "cert.pem")
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"
    ], { stdio: "ignore" })
    return { dir, key, cert }
  }),
  ({ dir }) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("TLS between pods and the manager (a child process, real sockets on 127.0.0.1)", () => {
  it.scopedLive("with the certificate trusted, pods register over wss:// and route messages to each other", () =>
    Effect.gen(function*() {
      const { cert, key } = yield* selfSigned
      const child = yield* spawnChild("tls", "test/process/tlsChild.ts", [], {
        TLS_KEY: key,
        TLS_CERT: cert,
        NODE_EXTRA_CA_CERTS: cert
      })
      const [, json] = yield* child.waitFor(/^routed (.*)$/)
      const routed = JSON.parse(json!)
      expect(routed.manager).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
      expect(routed).toMatchObject({ fromB: 2, fromA: 3, count: 2 })
    }), 90_000)

  it.scopedLive("without it, a pod refuses the manager's certificate (and says so)", () =>
    Effect.gen(function*() {
      const { cert, key } = yield* selfSigned
      const child = yield* spawnChild("tls", "test/process/tlsChild.ts", [], { TLS_KEY: key, TLS_CERT: cert })
      const [, line] = yield* child.waitFor(/^refused (.*)$/)
      expect(line).toMatch(/certificate/i)
    }), 90_000)
})
