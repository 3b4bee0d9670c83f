import * as Headers from "@effect/platform/Headers"
import * as Socket from "@effect/platform/Socket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as HashSet from "effect/HashSet"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { TransportConfig } from "../Transport.js"
import { AUTH_HEADER, tokenOf } from "./auth.js"
import { RPC_PATH } from "./server.js"

/**
 * The client side of the transport: one rpc client per peer address over one websocket (all calls to a
 * peer share it and are multiplexed by request id), opened on first use, closed after
 * `idleConnectionTimeout` without calls or as soon as a call finds it could never connect. Every call is
 * bounded by a timeout; a failed call says whether the request certainly never left this process (no
 * connection was open at any time during the call).
 */

/** A call to a peer failed without an answer. `notDelivered`: the request certainly never left. */
export class PeerFailure {
  readonly _tag = "PeerFailure"
  constructor(readonly notDelivered: boolean, readonly reason: string) {}
}

interface ConnectionState {
  open: boolean
  opens: number
}

interface Peer<Client> {
  readonly ready: Effect.Effect<Client>
  /** The client once `ready` has made it (calls then use it directly: the cached effect costs fiber steps). */
  client: Client | undefined
  readonly scope: Scope.CloseableScope
  readonly state: ConnectionState
  lastUsed: number
  inFlight: number
}

const liveClock: Clock.Clock = Context.get(DefaultServices.liveServices, Clock.Clock)
const maxTimerMillis = 2 ** 31 - 1

/** The websocket URL of a peer's rpc endpoint. */
export const urlOf = (host: string, port: number, tls: boolean): string =>
  `${tls ? "wss" : "ws"}://${host.includes(":") ? `[${host}]` : host}:${port}${RPC_PATH}`

// A socket that records when it is open: the protocol reconnects behind our back, and "was a connection
// open at any time during this call" is what tells "not delivered" from "outcome unknown".
const tracked = (socket: Socket.Socket, state: ConnectionState): Socket.Socket => {
  const opened = Effect.sync(() => {
    state.open = true
    state.opens++
  })
  const closed = Effect.sync(() => {
    state.open = false
  })
  const wrap = (run: Socket.Socket["runRaw"]): Socket.Socket["runRaw"] => (handler, options) =>
    Effect.ensuring(
      run(handler, { onOpen: options?.onOpen === undefined ? opened : Effect.zipRight(opened, options.onOpen) }),
      closed
    )
  return { ...socket, run: wrap(socket.runRaw) as Socket.Socket["run"], runRaw: wrap(socket.runRaw) }
}

// Reconnection after a lost connection: quick at first, then every few seconds. Calls made meanwhile fail at
// once (the protocol's current error) rather than wait.
const reconnectSchedule = Schedule.exponential(Duration.millis(100), 2).pipe(
  Schedule.union(Schedule.spaced(Duration.seconds(3)))
)

/**
 * An error's message followed by its causes' (an rpc "Error in socket" is caused by, e.g., a certificate
 * the client does not trust): what a log line needs to say why a peer could not be reached.
 */
export const reasonOf = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 6 && typeof current === "object" && current !== null; depth++) {
    const message = (current as { readonly message?: unknown }).message
    if (typeof message === "string" && message !== "" && !parts.includes(message)) parts.push(message)
    current = (current as { readonly cause?: unknown }).cause ?? (current as { readonly error?: unknown }).error
  }
  return parts.join(": ")
}

/** A pool of rpc clients of `group`, one per peer address. */
export interface PeerPool<Rpcs extends Rpc.Any> {
  /**
   * Runs `f` with the peer's client, within `timeout`. Failures without an answer become `PeerFailure`;
   * the peer's typed errors pass through.
   */
  readonly call: <A, E>(
    host: string,
    port: number,
    timeout: Duration.Duration,
    f: (client: RpcClient.RpcClient<Rpcs, RpcClientError>) => Effect.Effect<A, E | RpcClientError>
  ) => Effect.Effect<A, Exclude<E, RpcClientError> | PeerFailure>
}

/** Builds a pool whose connections close with the scope. */
export const makePeerPool = <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  config: TransportConfig
): Effect.Effect<PeerPool<Rpcs>, never, Scope.Scope> =>
  Effect.gen(function*() {
    type Client = RpcClient.RpcClient<Rpcs, RpcClientError>
    const peers = new Map<string, Peer<Client>>()
    const clock = yield* Effect.clock
    const runFork = yield* FiberSet.makeRuntime<never>()
    const headers = Option.match(config.secret, {
      onNone: () => undefined,
      onSome: (secret) => Headers.fromInput({ [AUTH_HEADER]: tokenOf(secret) })
    })
    const idleMillis = Duration.toMillis(config.idleConnectionTimeout)

    const connect = (url: string, state: ConnectionState): Effect.Effect<Client, never, Scope.Scope> =>
      Effect.gen(function*() {
        const socket = yield* Socket.makeWebSocket(url, { openTimeout: config.callTimeout }).pipe(
          Effect.provide(NodeSocket.layerWebSocketConstructor)
        )
        const protocol = yield* RpcClient.makeProtocolSocket({ retrySchedule: reconnectSchedule }).pipe(
          Effect.provideService(Socket.Socket, tracked(socket, state)),
          Effect.provideService(RpcSerialization.RpcSerialization, RpcSerialization.ndjson)
        )
        return yield* RpcClient.make(group, { disableTracing: true }).pipe(
          Effect.provideService(RpcClient.Protocol, protocol)
        )
      })

    const close = (key: string, peer: Peer<Client>): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (peers.get(key) === peer) peers.delete(key)
        return Scope.close(peer.scope, Exit.void)
      })

    const peerOf = (host: string, port: number): Peer<Client> => {
      const key = `${host}:${port}`
      let peer = peers.get(key)
      if (peer === undefined) {
        const scope = Effect.runSync(Scope.make())
        const state: ConnectionState = { open: false, opens: 0 }
        const made = Scope.extend(connect(urlOf(host, port, config.tls), state), scope)
        const ready = Effect.runSync(Effect.cached(Effect.tap(made, (client) => {
          created.client = client
        })))
        const created: Peer<Client> = { ready, client: undefined, scope, state, lastUsed: clock.unsafeCurrentTimeMillis(), inFlight: 0 }
        peer = created
        peers.set(key, peer)
      }
      return peer
    }

    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        return Effect.forEach(Array.from(peers), ([key, peer]) => close(key, peer), {
          discard: true,
          concurrency: "unbounded"
        })
      })
    )

    // Connections to peers no longer called (a pod that left) are closed.
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.sleep(Duration.millis(Math.max(1000, idleMillis / 2))),
      Effect.suspend(() => {
        const now = clock.unsafeCurrentTimeMillis()
        const idle = Array.from(peers).filter(([, peer]) => peer.inFlight === 0 && now - peer.lastUsed >= idleMillis)
        return Effect.forEach(idle, ([key, peer]) => close(key, peer), { discard: true })
      })
    )))

    // A call awaited for at most `timeout`, disconnected: a caller that times out (or is interrupted) returns
    // at once, and the call's interruption (the rpc client then tells the peer, which may wait for a
    // connection that never opens) goes on in the background. On the live clock the call runs in one fiber of
    // the pool with a timer beside it (`Effect.timeout` of a disconnected effect forks three fibers per call);
    // with another clock (a TestClock) the timeout is the clock's.
    const within = <A, E>(
      call: Effect.Effect<A, E>,
      timeout: Duration.Duration,
      onTimeout: () => PeerFailure
    ): Effect.Effect<A, E | PeerFailure> => {
      if (clock !== liveClock) {
        return Effect.disconnect(call).pipe(Effect.timeoutFail({ duration: timeout, onTimeout }))
      }
      const millis = Duration.toMillis(timeout)
      return Effect.async<A, E | PeerFailure>((resume) => {
        const fiber = runFork(call as Effect.Effect<A, never>)
        // (a timer's delay is at most 2^31 - 1 ms; Node fires a longer one after 1 ms: no timer, as the live
        // clock's sleep does)
        const timer = millis <= maxTimerMillis
          ? setTimeout(() => {
            resume(Exit.fail(onTimeout()))
            fiber.unsafeInterruptAsFork(FiberId.none)
          }, millis)
          : undefined
        fiber.addObserver((exit) => {
          clearTimeout(timer)
          resume(exit)
        })
        return Effect.sync(() => {
          clearTimeout(timer)
          fiber.unsafeInterruptAsFork(FiberId.none)
        })
      })
    }

    const call: PeerPool<Rpcs>["call"] = (host, port, timeout, f) =>
      Effect.suspend(() => {
        if (closed) return Effect.fail(new PeerFailure(true, "the transport is closed"))
        const peer = peerOf(host, port)
        const openAtStart = peer.state.open
        const opensAtStart = peer.state.opens
        peer.inFlight++
        peer.lastUsed = clock.unsafeCurrentTimeMillis()
        const failure = (reason: string): PeerFailure => {
          const notDelivered = !openAtStart && peer.state.opens === opensAtStart
          // A peer never reached is dropped: the next call connects afresh instead of waiting for the
          // protocol's reconnection schedule.
          if (notDelivered) runFork(close(`${host}:${port}`, peer))
          return new PeerFailure(notDelivered, reason)
        }
        const run = peer.client !== undefined ? f(peer.client) : Effect.flatMap(peer.ready, f)
        return within(headers === undefined ? run : Effect.locally(run, RpcClient.currentHeaders, headers), timeout, () =>
          failure("timed out")).pipe(
          Effect.catchIf(
            (error): error is RpcClientError => error instanceof RpcClientError,
            (error) => Effect.fail(failure(reasonOf(error)))
          ),
          Effect.catchAllDefect(() => Effect.fail(failure("the peer's answer could not be read"))),
          // A client closed under a pending call ends it with the library's own interruption id: that is a
          // lost connection, not an interruption of the caller.
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause) &&
              Array.from(Cause.interruptors(cause)).every((id) => HashSet.has(FiberId.ids(id), -503))
              ? Effect.fail(failure("the connection closed"))
              : Effect.failCause(cause)
          ),
          Effect.ensuring(Effect.sync(() => {
            peer.inFlight--
          }))
        ) as Effect.Effect<any, any>
      })

    return { call }
  })
