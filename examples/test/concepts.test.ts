/**
 * Runs each concept example of docs/ (one program per page) as a user would, and checks what it prints.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const run = (file: string): ReadonlyArray<string> =>
  execFileSync(process.execPath, ["--conditions=source", "--import", "tsx", file], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000
  }).trim().split("\n")

describe("concept examples", () => {
  it("retries.ts (docs/activities.md): attempts with one idempotency key, journaled retry decisions, a recorded result", () => {
    expect(run("examples/retries.ts")).toEqual([
      "attempt 0 (key SendInvoice/inv-1/send-email): sending to ada@example.com",
      "attempt 1 (key SendInvoice/inv-1/send-email): sending to ada@example.com",
      "attempt 2 (key SendInvoice/inv-1/send-email): sending to ada@example.com",
      "result: msg-2",
      "journal: StepStarted send-email attempt 0",
      "journal: StepRetrying send-email attempt 0 retry in 50 ms",
      "journal: StepStarted send-email attempt 1",
      "journal: StepRetrying send-email attempt 1 retry in 100 ms",
      "journal: StepStarted send-email attempt 2",
      "journal: StepCompleted send-email attempt 2",
      "journal: ExecutionCompleted (workflow) attempt 0",
      "sent again: msg-2"
    ])
  })

  it("transactional.ts (docs/activities.md): the body's writes and the recorded result commit together", () => {
    expect(run("examples/transactional.ts")).toEqual([
      "d1: balance 30",
      "d1 sent again: balance 30",
      "d2: failed: amount must be positive",
      "ledger: Deposit/d1/credit 30",
      "ledger: Deposit/d2/credit -5"
    ])
  })

  it("timers.ts (docs/timers.md): a suspended sleep with a journaled deadline, and a durable timeout", () => {
    expect(run("examples/timers.ts")).toEqual([
      "r1: Suspended on timer, deadline journaled: true",
      "executions held in memory while it sleeps: 0",
      "r1: reminded r1",
      "woke at or after the deadline: true",
      "a1: no answer in time: escalated"
    ])
  })

  it("signals.ts (docs/signals.md): suspended on a signal, first value wins, typed failure, unknown execution", () => {
    expect(run("examples/signals.ts")).toEqual([
      "e1: Suspended on signal:decision",
      "e1: first signal stored: true, second signal stored: false",
      "e1: paid 40 (approved by grace)",
      "e2: failed: over budget",
      "e3: ExecutionNotFoundError"
    ])
  })

  it("cancellation.ts (docs/cancellation.md): a caller giving up detaches; cancel compensates in reverse order", () => {
    const lines = run("examples/cancellation.ts")
    expect(lines.slice(0, 4)).toEqual([
      "charge card",
      "reserve seat",
      "caller gave up: true; b1 is Suspended",
      "cancel: cancelled"
    ])
    // the compensations run in the execution's fiber, concurrently with the caller's next line
    const compensations = lines.filter((line) => line.startsWith("release") || line.startsWith("refund"))
    expect(compensations).toEqual(["release seat-12A", "refund charge-1"])
    expect(lines.indexOf("refund charge-1")).toBeLessThan(lines.indexOf("result: WorkflowCancelledError; b1 is Cancelled"))
    expect(lines.slice(-3)).toEqual([
      "result: WorkflowCancelledError; b1 is Cancelled",
      "send: defect is WorkflowCancelledError: true",
      "cancel again: already-finished"
    ])
  })

  it("versioning.ts (docs/versioning.md): an old execution keeps the old path, a new one takes the patched path", () => {
    expect(run("examples/versioning.ts")).toEqual([
      "v1 engine: old is waiting",
      "old: email (started on v1, finished by v2)",
      "new: sms (started on v2, finished by v2)",
      "new's journal has the marker: sms-instead-of-email"
    ])
  })

  it("status.ts (docs/status.md): every status, paged listing, poll, a caller's timeout, result later, retention", () => {
    expect(run("examples/status.ts")).toEqual([
      "completed: Completed (1)",
      "failed: Failed (failure)",
      "sleeping: Suspended (timer, wakes at a journaled deadline)",
      "waiting: Suspended (signal:paid)",
      "cancelled: Cancelled",
      "nope: Unknown",
      "list: cancelled=cancelled completed=completed | failed=failed sleeping=suspended | waiting=suspended",
      "suspended: sleeping on timer, waiting on signal:paid",
      "poll waiting: not finished",
      "execute waiting (20 ms): ResultTimeoutError",
      "result waiting: 3",
      "deleted: 4; completed is Unknown, sleeping is Suspended",
      "result sleeping: 2"
    ])
  })

  it("engine.ts (docs/engine.md): scope close interrupts without recording and releases the claim; resume by identity or by another engine at once", () => {
    expect(run("examples/engine.ts")).toEqual([
      "job-1: export attempt 0 started",
      "job-1: export interrupted (engine closing)",
      "job-1 in the journal: running, claimed by null, result null",
      "job-1: export attempt 1 started",
      "pod-a (restarted): job-1 exported on attempt 1",
      "job-2: export attempt 0 started",
      "job-2: export interrupted (engine closing)",
      "job-2: export attempt 1 started",
      "pod-b: job-2 exported on attempt 1",
      "pod-a released job-2's claim when it shut down: true",
      "job-2 claim epoch: 2"
    ])
  })
})
