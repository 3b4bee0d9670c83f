/**
 * What the cluster engine knows of its pod's shards: those it has taken over, and the lapses among them.
 *
 * A pod serves a shard only while its lease is valid by the pod's own clock (`Sharding.servedShardEpochs`).
 * On a starved machine the lease can run out by that clock and be renewed before the pod's lease watchdog
 * drops the shard: the shard leaves the served shards and comes back at the same epoch, and the pod
 * announces neither (`servedShardEpochsChanges` follows the held shards). Whatever the engine decided
 * meanwhile on the served shards is then stale: a write refused (its execution stopped here), a claim
 * refused (a wake-up, a timer's resumption), a timer that read no deadline of the shard. So every read of
 * the served shards goes through `served`, which notes a taken shard it lacks; the engine looks again until
 * the lapse ends (see docs/workflows-on-cluster.md, "Resume on takeover").
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"

/** @internal */
export class ShardFollow {
  /** Shards taken over here, with the epoch each was taken at. */
  readonly taken = new Map<number, number>()
  /** Taken shards that a read of the served shards lacked, with the epoch they were taken at. */
  readonly lapsed = new Map<number, number>()
  /** Offered at each announced change of the pod's shards, and when a lapse is first seen. */
  readonly changed: Queue.Queue<void> = Effect.runSync(Queue.sliding<void>(1))

  constructor(private readonly source: Effect.Effect<ReadonlyMap<number, number>>) {}

  /** The shards the pod serves now, with their epochs; notes the taken shards missing from them. */
  readonly served: Effect.Effect<ReadonlyMap<number, number>> = Effect.map(
    Effect.suspend(() => this.source),
    (now) => {
      for (const [shard, epoch] of this.taken) {
        if (now.has(shard) || this.lapsed.has(shard)) continue
        this.lapsed.set(shard, epoch)
        this.changed.unsafeOffer(undefined)
      }
      return now
    }
  )

  /** A taken shard missing from `now` while the pod still holds it: a lapse, which may end at the same epoch. */
  inLapse(shard: number, now: ReadonlyMap<number, number>, held: ReadonlySet<number>): boolean {
    return !now.has(shard) && held.has(shard)
  }

  /**
   * Whether a served shard is to be taken over: new here, served at another epoch, or served again at its
   * epoch after a lapse (then only what the lapse may have left behind is resumed: `again`).
   */
  toTake(shard: number, epoch: number): { readonly take: boolean; readonly again: boolean } {
    const again = this.taken.get(shard) === epoch && this.lapsed.get(shard) === epoch
    this.lapsed.delete(shard)
    return { take: again || this.taken.get(shard) !== epoch, again }
  }

  /** Forgets the lapses of shards the pod no longer holds (dropped: announced, and taken care of then). */
  forgetDropped(held: ReadonlySet<number>) {
    for (const shard of this.lapsed.keys()) if (!held.has(shard)) this.lapsed.delete(shard)
  }
}
