/**
 * The network transport's settings and its request-level error: where a pod or manager listens, the
 * shared secret that authenticates calls, and the bound of every network call.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as auth from "./internal/auth.js"

/**
 * Settings of the network transport. Defaults in brackets.
 *
 * - `host` ["127.0.0.1"]: the interface this process's server binds to. Use `0.0.0.0` (or a specific
 *   address) to accept calls from other machines. (The port is the pod's `shardingPort` or the manager's
 *   `apiPort`.)
 * - `secret` [none]: a shared secret. When set, every call carries a token derived from it and calls
 *   without the right token are rejected (`RequestRejected` with reason `"Unauthenticated"`). The secret
 *   itself never crosses the wire and is never logged.
 * - `tls` [false]: clients connect with `wss://` instead of `ws://` (the server side of TLS is an
 *   `https.Server` given to the server layers; see docs/deployment.md).
 * - `sendTimeout` [5 seconds]: one attempt of a cross-pod send. Past it the attempt fails with
 *   `PodUnavailableException` (outcome unknown), or, when no connection to the pod was ever made during
 *   the attempt, with the same error marked not delivered.
 * - `callTimeout` [3 seconds]: ping, assignment, registration and routing-table calls.
 * - `unassignTimeout` [10 seconds]: the manager's call asking a pod to stop shards (the pod answers once
 *   its entities stopped, within its `entityTerminationTimeout`). A timeout means "still owned".
 * - `maxMessageBytes` [4 MiB]: the largest request frame a server reads; larger ones are rejected.
 * - `idleConnectionTimeout` [60 seconds]: a connection to a peer unused this long is closed (a pod that
 *   left the cluster leaves no connection behind).
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportConfig {
  readonly host: string
  readonly secret: Option.Option<Redacted.Redacted<string>>
  readonly tls: boolean
  readonly sendTimeout: Duration.Duration
  readonly callTimeout: Duration.Duration
  readonly unassignTimeout: Duration.Duration
  readonly maxMessageBytes: number
  readonly idleConnectionTimeout: Duration.Duration
}

/**
 * @since 0.1.0
 * @category context
 */
export const TransportConfig: Context.Tag<TransportConfig, TransportConfig> = Context.GenericTag<TransportConfig>(
  "@effect-cluster/cluster/node/TransportConfig"
)

/**
 * The default values.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultValues: TransportConfig = {
  host: "127.0.0.1",
  secret: Option.none(),
  tls: false,
  sendTimeout: Duration.seconds(5),
  callTimeout: Duration.seconds(3),
  unassignTimeout: Duration.seconds(10),
  maxMessageBytes: 4 * 1024 * 1024,
  idleConnectionTimeout: Duration.seconds(60)
}

/**
 * The defaults with some values replaced.
 *
 * @since 0.1.0
 * @category layers
 */
export const withDefaults = (customs: Partial<TransportConfig>): Layer.Layer<TransportConfig> =>
  Layer.succeed(TransportConfig, { ...defaultValues, ...customs })

const millis = (name: string, fallback: Duration.Duration) =>
  Config.integer(name).pipe(
    Config.map(Duration.millis),
    Config.withDefault(fallback),
    Config.withDescription(`${name} in milliseconds`)
  )

/**
 * Reads the settings from the `ConfigProvider` (environment variables by default), falling back to the
 * defaults: `CLUSTER_HOST`, `CLUSTER_SECRET` (redacted), `CLUSTER_TLS`, and in
 * milliseconds `CLUSTER_SEND_TIMEOUT`, `CLUSTER_CALL_TIMEOUT`, `CLUSTER_UNASSIGN_TIMEOUT`,
 * `CLUSTER_IDLE_CONNECTION_TIMEOUT`; `CLUSTER_MAX_MESSAGE_BYTES`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const config: Config.Config<TransportConfig> = Config.all({
  host: Config.string("CLUSTER_HOST").pipe(
    Config.withDefault(defaultValues.host),
    Config.withDescription("interface the server binds to")
  ),
  secret: Config.option(Config.redacted("CLUSTER_SECRET")).pipe(
    Config.withDescription("shared secret authenticating every call")
  ),
  tls: Config.boolean("CLUSTER_TLS").pipe(
    Config.withDefault(defaultValues.tls),
    Config.withDescription("clients connect with wss://")
  ),
  sendTimeout: millis("CLUSTER_SEND_TIMEOUT", defaultValues.sendTimeout),
  callTimeout: millis("CLUSTER_CALL_TIMEOUT", defaultValues.callTimeout),
  unassignTimeout: millis("CLUSTER_UNASSIGN_TIMEOUT", defaultValues.unassignTimeout),
  maxMessageBytes: Config.integer("CLUSTER_MAX_MESSAGE_BYTES").pipe(
    Config.withDefault(defaultValues.maxMessageBytes),
    Config.withDescription("largest request frame a server reads")
  ),
  idleConnectionTimeout: millis("CLUSTER_IDLE_CONNECTION_TIMEOUT", defaultValues.idleConnectionTimeout)
})

/**
 * The settings read with `config`, as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const fromConfig: Layer.Layer<TransportConfig, ConfigError.ConfigError> = Layer.effect(TransportConfig, config)

/**
 * A server refused a request before running it: `"Unauthenticated"` (no or wrong token), `"Malformed"`
 * (not a request of the protocol, or a payload its schema rejects), `"TooLarge"` (over
 * `maxMessageBytes`). Nothing was done; the message was not delivered.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestRejected extends Schema.TaggedError<RequestRejected>()(
  "@effect-cluster/cluster/node/RequestRejected",
  {
    reason: Schema.Literal("Unauthenticated", "Malformed", "TooLarge"),
    detail: Schema.String
  }
) {}

/**
 * The header that carries a call's token when a secret is configured.
 *
 * @since 0.1.0
 * @category authentication
 */
export const authHeader: string = auth.AUTH_HEADER

/**
 * The token derived from a secret (HMAC-SHA256 of a fixed label, base64url): what a client sends in
 * `authHeader`. The secret itself never crosses the wire.
 *
 * @since 0.1.0
 * @category authentication
 */
export const tokenOf: (secret: Redacted.Redacted<string>) => string = auth.tokenOf
