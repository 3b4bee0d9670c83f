/**
 * A pod for transport tests on a real loopback socket: it answers every envelope with its own body
 * (processed), records each request's size and each envelope's message id, and holds each request until
 * `gate` (read per request) completes.
 */
import { PodAddress, RecipientAddress, SerializedEnvelope, SerializedMessage } from "@effect-cluster/cluster"
import { ShardingProtocol, Transport } from "@effect-cluster/cluster/node"
import { Effect, Layer } from "effect"
import * as server from "../../src/node/internal/server.js"

export const recordingPod = (
  record: { readonly sizes?: Array<number>; readonly received?: Array<string> },
  gate: () => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function*() {
    const http = yield* Layer.build(server.layerHttpServer({ host: "127.0.0.1", port: 0 }))
    const handlers = yield* ShardingProtocol.ShardingRpcs.toHandlersContext(ShardingProtocol.ShardingRpcs.of({
      AssignShards: () => Effect.void,
      UnassignShards: () => Effect.void,
      Ping: () => Effect.void,
      Send: ({ envelopes }) =>
        Effect.zipRight(
          Effect.sync(() => {
            record.sizes?.push(envelopes.length)
            for (const envelope of envelopes) record.received?.push(envelope[2])
          }),
          Effect.as(Effect.suspend(gate), envelopes.map((envelope) => [1, envelope[3]] as const))
        )
    }))
    yield* server.serve({
      name: "recording pod",
      group: ShardingProtocol.ShardingRpcs,
      handlers,
      config: Transport.defaultValues,
      health: Effect.succeed(true)
    }).pipe(Effect.provide(http))
    return PodAddress.make("127.0.0.1", yield* Effect.provide(server.boundPort, http))
  })

/** Envelope `i` to a `Counter`: message id `m<i>`, body `{"n":<i>}`. */
export const envelope = (i: number) =>
  SerializedEnvelope.make(
    RecipientAddress.makeRecipientAddress("Counter", `e${i}`),
    `m${i}`,
    SerializedMessage.make(`{"n":${i}}`)
  )
