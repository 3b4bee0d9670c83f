/// <reference types="node" />
/**
 * Node-only modules: the network transport (`@effect-cluster/cluster/node`). Not reachable from the
 * package's root entry, which stays browser-safe.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as NodeCluster from "./NodeCluster.js"
/**
 * @since 0.1.0
 */
export * as PodsRpc from "./PodsRpc.js"
/**
 * @since 0.1.0
 */
export * as ShardingProtocol from "./ShardingProtocol.js"
/**
 * @since 0.1.0
 */
export * as ShardManagerClientRpc from "./ShardManagerClientRpc.js"
/**
 * @since 0.1.0
 */
export * as ShardManagerProtocol from "./ShardManagerProtocol.js"
/**
 * @since 0.1.0
 */
export * as Transport from "./Transport.js"
