/**
 * A second opinion on whether a pod is alive. The manager consults it before declaring a pod whose lease
 * has ended dead: it may delay that decision, never hasten it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { ManagerConfig } from "./ManagerConfig.js"
import { Pods } from "./Pods.js"
import type { PodAddress } from "./PodAddress.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface PodsHealth {
  readonly isAlive: (address: PodAddress) => Effect.Effect<boolean>
}

/**
 * @since 0.1.0
 * @category context
 */
export const PodsHealth: Context.Tag<PodsHealth, PodsHealth> = Context.GenericTag<PodsHealth>(
  "@effect-cluster/cluster/PodsHealth"
)

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (impl: PodsHealth): PodsHealth => impl

/**
 * Every pod is alive (so a silent pod is declared dead after its lease plus one more lease period).
 *
 * @since 0.1.0
 * @category layers
 */
export const noop: Layer.Layer<PodsHealth> = Layer.succeed(PodsHealth, { isAlive: () => Effect.succeed(true) })

/**
 * A pod is alive when `Pods.ping` answers within the manager's `pingTimeout` (3 seconds when no
 * `ManagerConfig` is provided).
 *
 * @since 0.1.0
 * @category layers
 */
export const local: Layer.Layer<PodsHealth, never, Pods> = Layer.effect(
  PodsHealth,
  Effect.map(Effect.all([Pods, Effect.serviceOption(ManagerConfig)]), ([pods, config]) => ({
    isAlive: (address: PodAddress) =>
      pods.ping(address).pipe(
        Effect.timeout(Option.match(config, { onNone: () => Duration.seconds(3), onSome: (_) => _.pingTimeout })),
        Effect.as(true),
        Effect.orElseSucceed(() => false)
      )
  }))
)
