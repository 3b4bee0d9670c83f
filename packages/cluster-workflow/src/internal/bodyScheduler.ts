/**
 * The scheduler of a workflow body's fibers: it delegates to the engine's scheduler and counts the body's
 * tasks that are scheduled and not yet run. With none pending and the coordinator running (one thread), no
 * fiber of the body can run: the body is blocked on its steps. This is how an execution knows that its
 * body has settled (after replay, before suspending) without counting quiet scheduler rounds.
 *
 * @internal
 */
import type * as Fiber from "effect/Fiber"
import type * as Scheduler from "effect/Scheduler"

/** @internal */
export class BodyScheduler implements Scheduler.Scheduler {
  private pending = 0

  constructor(
    private readonly base: Scheduler.Scheduler,
    /** Called when the last pending task of the body has run (the body is blocked). */
    private readonly onIdle: () => void
  ) {}

  /** No fiber of the body is runnable. */
  get idle(): boolean {
    return this.pending === 0
  }

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return this.base.shouldYield(fiber)
  }

  scheduleTask(task: Scheduler.Task, priority: number, fiber?: Fiber.RuntimeFiber<unknown, unknown>): void {
    this.pending++
    this.base.scheduleTask(() => {
      this.pending--
      try {
        task()
      } finally {
        if (this.pending === 0) this.onIdle()
      }
    }, priority, fiber)
  }
}
