import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

/**
 * One shared timer for passivation: entries sit in buckets of `resolutionMillis`; a single fiber sleeps
 * until the earliest non-empty bucket and hands its entries to `onFire`. Idle entities therefore cost a
 * slot in an array, not a fiber each. Entries are rescheduled lazily: activity only updates a timestamp,
 * and `onFire` decides whether the entry is really due or must be scheduled again.
 */
export class TimerWheel<E> {
  private readonly buckets = new Map<number, Array<E>>()
  private readonly heap: Array<number> = []
  private armed = Number.POSITIVE_INFINITY
  private wake: Deferred.Deferred<void> | undefined

  constructor(
    readonly resolutionMillis: number,
    private readonly now: () => number,
    private readonly onFire: (entries: ReadonlyArray<E>) => void
  ) {}

  schedule(entry: E, deadlineMillis: number): void {
    const index = Math.ceil(deadlineMillis / this.resolutionMillis)
    let bucket = this.buckets.get(index)
    if (bucket === undefined) {
      bucket = []
      this.buckets.set(index, bucket)
      this.push(index)
    }
    bucket.push(entry)
    if (index < this.armed && this.wake !== undefined) {
      Deferred.unsafeDone(this.wake, Effect.void)
    }
  }

  get size(): number {
    let total = 0
    for (const bucket of this.buckets.values()) total += bucket.length
    return total
  }

  /** The wheel's fiber: run it forked in the owner's scope. */
  readonly run: Effect.Effect<never> = Effect.suspend(() => {
    const loop: Effect.Effect<never> = Effect.suspend(() => {
      const now = this.now()
      while (this.heap.length > 0 && this.heap[0]! * this.resolutionMillis <= now) {
        const index = this.pop()
        const bucket = this.buckets.get(index)
        this.buckets.delete(index)
        if (bucket !== undefined) this.onFire(bucket)
      }
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      this.wake = wake
      if (this.heap.length === 0) {
        this.armed = Number.POSITIVE_INFINITY
        return Effect.zipRight(Deferred.await(wake), loop)
      }
      this.armed = this.heap[0]!
      const delay = Math.max(1, this.armed * this.resolutionMillis - now)
      return Effect.zipRight(Effect.raceFirst(Effect.sleep(delay), Deferred.await(wake)), loop)
    })
    return loop
  })

  private push(value: number): void {
    const heap = this.heap
    heap.push(value)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent]! <= value) break
      heap[i] = heap[parent]!
      i = parent
    }
    heap[i] = value
  }

  private pop(): number {
    const heap = this.heap
    const top = heap[0]!
    const last = heap.pop()!
    if (heap.length > 0) {
      let i = 0
      const n = heap.length
      for (;;) {
        const left = 2 * i + 1
        if (left >= n) break
        const right = left + 1
        const child = right < n && heap[right]! < heap[left]! ? right : left
        if (heap[child]! >= last) break
        heap[i] = heap[child]!
        i = child
      }
      heap[i] = last
    }
    return top
  }
}
