/**
 * The journal contract: the same suite against the in-memory, SQLite and PostgreSQL journals. The in-memory
 * journal is the executable specification; every expectation below holds for all three.
 */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ExecutionRow } from "../src/DurableExecutionJournal.js"
import { DurableExecutionJournal, formatVersion } from "../src/DurableExecutionJournal.js"
import { append, describeJournals, event, fence, key, start, suspend } from "./utils/journals.js"

const getRow = (k: ReturnType<typeof key>) =>
  Effect.flatMap(DurableExecutionJournal, (j) => j.get(k)).pipe(Effect.map(Option.getOrThrow))

describeJournals("journal contract", (journal) => {
  const test = (name: string, body: Effect.Effect<void, unknown, DurableExecutionJournal>) =>
    it.effect(name, () => Effect.provide(body, journal.layer))

  test(
    "Start inserts a running execution claimed with epoch 1, and is idempotent",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      expect(yield* j.get(k)).toEqual(Option.none())
      expect(yield* j.commit([start(k, { parent: `{"workflow":"p"}`, claimUntil: 5_000, now: 1_000 })])).toEqual([{
        _tag: "Created",
        epoch: 1
      }])
      const row = yield* getRow(k)
      expect(row).toEqual<ExecutionRow>({
        workflow: "wf",
        executionId: "e1",
        payload: JSON.stringify({ _tag: "wf", id: "e1" }),
        payloadHash: "hash-e1",
        version: "v1",
        parent: `{"workflow":"p"}`,
        status: "running",
        suspendedOn: null,
        wakeAt: null,
        result: null,
        claimOwner: "A",
        claimEpoch: 1,
        claimUntil: 5_000,
        cancelRequested: false,
        inboxVersion: 0,
        createdAt: 1_000,
        updatedAt: 1_000,
        completedAt: null,
        formatVersion
      })
      // Same key again (even with another payload or owner): Exists with the stored row, nothing changes.
      expect(yield* j.commit([start(k, { payloadHash: "other", owner: "B", now: 2_000 })])).toEqual([{
        _tag: "Exists",
        row
      }])
      expect(yield* getRow(k)).toEqual(row)
    })
  )

  test(
    "Append is fenced by (owner, epoch) and appends events in sequence",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      yield* j.commit([start(k)])
      expect(yield* j.commit([append(k, fence("B", 1), [event(0)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(k, fence("A", 2), [event(0)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(key("missing"), fence("A", 1), [event(0)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.events(k, 0)).toEqual([])
      expect(yield* j.commit([append(k, fence(), [event(0), event(1, { attempt: 2, stepScope: "loop/1" })])]))
        .toEqual([{ _tag: "Ok" }])
      expect(yield* j.commit([append(k, fence(), [event(2)])])).toEqual([{ _tag: "Ok" }])
      expect(yield* j.events(k, 0)).toEqual([event(0), event(1, { attempt: 2, stepScope: "loop/1" }), event(2)])
      expect(yield* j.events(k, 1)).toEqual([event(1, { attempt: 2, stepScope: "loop/1" }), event(2)])
      expect(yield* j.events(k, 3)).toEqual([])
      expect(yield* j.events(k, -5)).toHaveLength(3)
      // An append without a row update leaves the row alone.
      expect(yield* getRow(k)).toMatchObject({ status: "running", updatedAt: 100, claimOwner: "A" })
    })
  )

  test(
    "Append refuses events whose sequence does not grow past the execution's last event",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      yield* j.commit([start(k)])
      expect(yield* j.commit([append(k, fence(), [event(-1)])])).toEqual([{ _tag: "Fenced" }])
      // Gaps are allowed; sequences only grow.
      expect(yield* j.commit([append(k, fence(), [event(2)])])).toEqual([{ _tag: "Ok" }])
      expect(yield* j.commit([append(k, fence(), [event(2)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(k, fence(), [event(1)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(k, fence(), [event(5), event(4)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(k, fence(), [event(3), event(3)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(k, fence(), [event(3), event(7)])])).toEqual([{ _tag: "Ok" }])
      expect((yield* j.events(k, 0)).map((e) => e.sequence)).toEqual([2, 3, 7])
      // An empty append with an update only checks the fence.
      expect(yield* j.commit([append(k, fence(), [], { status: "running" }, 777)])).toEqual([{ _tag: "Ok" }])
      expect(yield* getRow(k)).toMatchObject({ updatedAt: 777 })
      expect(yield* j.commit([append(k, fence(), [event(8)])])).toEqual([{ _tag: "Ok" }])
    })
  )

  test(
    "a terminal update stores the result, releases the claim and ends all further writes",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      yield* j.commit([start(k)])
      yield* j.requestCancel(k, 150)
      expect(
        yield* j.commit([
          append(k, fence(), [event(0)], {
            status: "completed",
            result: `{"_tag":"Success","value":1}`,
            completedAt: 250,
            cancelHandled: true
          }, 250)
        ])
      ).toEqual([{ _tag: "Ok" }])
      const row = yield* getRow(k)
      expect(row).toMatchObject({
        status: "completed",
        result: `{"_tag":"Success","value":1}`,
        completedAt: 250,
        cancelRequested: false,
        claimOwner: null,
        claimUntil: null,
        claimEpoch: 1,
        suspendedOn: null,
        wakeAt: null,
        updatedAt: 250,
        inboxVersion: 1
      })
      expect(yield* j.commit([append(k, fence(), [event(1)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([suspend(k, fence(), 1)])).toEqual([{ _tag: "Fenced" }])
      expect((yield* j.claim(k, "A", 300, 400))._tag).toEqual("Unavailable")
      expect(yield* getRow(k)).toEqual(row)
    })
  )

  test(
    "a non-terminal update keeps the claim; a terminal status without completedAt keeps completedAt null",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      yield* j.commit([start(k)])
      yield* j.commit([append(k, fence(), [], { result: "partial" }, 210)])
      expect(yield* getRow(k)).toMatchObject({ status: "running", result: "partial", claimOwner: "A" })
      yield* j.commit([append(k, fence(), [], { status: "failed" }, 220)])
      expect(yield* getRow(k)).toMatchObject({
        status: "failed",
        result: "partial",
        completedAt: null,
        claimOwner: null,
        updatedAt: 220
      })
    })
  )

  test(
    "a batch applies each write on its own, in order, with one result per write",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const a = key("a")
      const b = key("b")
      const c = key("c", "other")
      yield* j.commit([start(b)])
      const results = yield* j.commit([
        start(a),
        append(a, fence(), [event(0)]),
        append(b, fence("X", 1), [event(0)]), // fenced: must not fail the others
        append(a, fence(), [event(1)]),
        start(b),
        append(b, fence(), [event(0)]), // after a Start that found its execution: not applied
        start(c, { owner: "C" }),
        suspend(c, fence("C", 1), 0, { wakeAt: 900 }),
        append(a, fence(), [event(1)]), // not past the last event: refused
        append(a, fence(), [event(2)], { status: "completed", result: "r", completedAt: 260 })
      ])
      expect(results.map((r) => r._tag)).toEqual([
        "Created",
        "Ok",
        "Fenced",
        "Ok",
        "Exists",
        "Fenced",
        "Created",
        "Ok",
        "Fenced",
        "Ok"
      ])
      expect((yield* j.events(a, 0)).map((e) => e.sequence)).toEqual([0, 1, 2])
      expect((yield* j.events(b, 0)).map((e) => e.sequence)).toEqual([])
      expect(yield* getRow(a)).toMatchObject({ status: "completed", result: "r" })
      expect(yield* getRow(c)).toMatchObject({ status: "suspended", wakeAt: 900, claimOwner: null })
      expect(yield* j.commit([])).toEqual([])
    })
  )

  test(
    "a Start and the first Append of its execution in one batch",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      // Created and appended at once.
      expect(
        yield* j.commit([
          start(key("new"), { now: 10 }),
          append(key("new"), fence(), [event(0), event(1)], { status: "completed", result: "r", completedAt: 11 }, 11)
        ])
      ).toEqual([{ _tag: "Created", epoch: 1 }, { _tag: "Ok" }])
      expect(yield* getRow(key("new"))).toMatchObject({
        status: "completed",
        result: "r",
        completedAt: 11,
        updatedAt: 11,
        createdAt: 10,
        claimOwner: null,
        claimUntil: null,
        claimEpoch: 1
      })
      expect((yield* j.events(key("new"), 0)).map((e) => e.sequence)).toEqual([0, 1])
      // Created, but the append is not its claim's, or its events do not start at a valid sequence.
      expect(yield* j.commit([start(key("other")), append(key("other"), fence("B", 1), [event(0)])])).toEqual([
        { _tag: "Created", epoch: 1 },
        { _tag: "Fenced" }
      ])
      expect(yield* j.commit([start(key("neg")), append(key("neg"), fence(), [event(-1)])])).toEqual([
        { _tag: "Created", epoch: 1 },
        { _tag: "Fenced" }
      ])
      expect(yield* j.events(key("neg"), -10)).toEqual([])
      // The execution exists: Exists carries the row, and the writes after the Start in this batch are
      // not applied, even under a claim that holds the row (the writer presumed a new execution).
      yield* j.commit([start(key("mine"), { now: 1 })])
      const before = yield* getRow(key("mine"))
      const [exists, appended, later] = yield* j.commit([
        start(key("mine"), { now: 20 }),
        append(key("mine"), fence(), [event(0)], { result: "x" }, 21),
        suspend(key("mine"), fence(), 0)
      ])
      expect(exists).toEqual({ _tag: "Exists", row: before })
      expect(appended).toEqual({ _tag: "Fenced" })
      expect(later).toEqual({ _tag: "Fenced" })
      expect(yield* getRow(key("mine"))).toEqual(before)
      expect(yield* j.events(key("mine"), 0)).toEqual([])
      // Without the Start in the batch, the same append applies to the row its claim holds.
      expect(yield* j.commit([append(key("mine"), fence(), [event(0)], { result: "x" }, 21)])).toEqual([{ _tag: "Ok" }])
      expect(yield* getRow(key("mine"))).toMatchObject({ result: "x", updatedAt: 21, createdAt: 1 })
      yield* j.commit([start(key("theirs"), { owner: "B" })])
      expect(yield* j.commit([start(key("theirs")), append(key("theirs"), fence(), [event(0)])])).toMatchObject([
        { _tag: "Exists", row: { claimOwner: "B" } },
        { _tag: "Fenced" }
      ])
    })
  )

  test(
    "Suspend releases the claim, and is refused when the inbox moved or the claim is lost",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      yield* j.commit([start(k)])
      const signalled = yield* j.signal(k, "approve", `"yes"`, 150)
      expect(signalled?.row.inboxVersion).toEqual(1)
      expect(yield* j.commit([suspend(k, fence(), 0)])).toEqual([{ _tag: "InboxChanged" }])
      expect(yield* j.commit([suspend(k, fence("A", 7), 1)])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([suspend(key("missing"), fence(), 0)])).toEqual([{ _tag: "Fenced" }])
      expect(yield* getRow(k)).toMatchObject({ status: "running", claimOwner: "A" })
      expect(yield* j.commit([suspend(k, fence(), 1, { suspendedOn: "signal", wakeAt: null, now: 320 })])).toEqual([
        { _tag: "Ok" }
      ])
      expect(yield* getRow(k)).toMatchObject({
        status: "suspended",
        suspendedOn: "signal",
        wakeAt: null,
        claimOwner: null,
        claimUntil: null,
        claimEpoch: 1,
        updatedAt: 320
      })
      // Suspended: the old fence no longer holds.
      expect(yield* j.commit([append(k, fence(), [event(0)])])).toEqual([{ _tag: "Fenced" }])
    })
  )

  test(
    "claim takes free, expired or own claims, increments the epoch and makes the execution running",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      expect(yield* j.claim(k, "A", 0, 10)).toEqual({ _tag: "Unavailable", row: undefined })
      yield* j.commit([start(k, { claimUntil: 1_000 })])
      // Held by A until 1000.
      const held = yield* j.claim(k, "B", 500, 2_000)
      expect(held._tag).toEqual("Unavailable")
      expect(held.row).toMatchObject({ claimOwner: "A", claimEpoch: 1 })
      // Not expired at exactly claimUntil.
      expect((yield* j.claim(k, "B", 1_000, 2_000))._tag).toEqual("Unavailable")
      // Own claim: re-claimed with a new epoch (a restarted engine with the same identity).
      const own = yield* j.claim(k, "A", 600, 1_600)
      expect(own).toMatchObject({ _tag: "Claimed", row: { claimOwner: "A", claimEpoch: 2, claimUntil: 1_600 } })
      // Expired: anyone may take it.
      const taken = yield* j.claim(k, "B", 1_601, 3_000)
      expect(taken).toMatchObject({
        _tag: "Claimed",
        row: { claimOwner: "B", claimEpoch: 3, claimUntil: 3_000, updatedAt: 1_601, status: "running" }
      })
      expect(yield* j.commit([append(k, fence("A", 2), [event(0)])])).toEqual([{ _tag: "Fenced" }])
      expect(yield* j.commit([append(k, fence("B", 3), [event(0)])])).toEqual([{ _tag: "Ok" }])
      // Suspended executions are free; a claim clears the suspension.
      yield* j.commit([suspend(k, fence("B", 3), 0, { wakeAt: 4_000 })])
      const resumed = yield* j.claim(k, "C", 1_700, 2_700)
      expect(resumed).toMatchObject({
        _tag: "Claimed",
        row: { status: "running", suspendedOn: null, wakeAt: null, claimOwner: "C", claimEpoch: 4 }
      })
    })
  )

  test(
    "renew extends only the claims still held, in order",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const a = key("a")
      const b = key("b")
      const c = key("c")
      yield* j.commit([start(a), start(b), start(c, { owner: "Z" })])
      yield* j.claim(b, "A", 200, 900) // epoch 2
      const renewed = yield* j.renew("A", [
        { key: b, epoch: 1 },
        { key: a, epoch: 1 },
        { key: c, epoch: 1 },
        { key: key("missing"), epoch: 1 },
        { key: b, epoch: 2 }
      ], 50_000)
      expect(renewed.map((r) => r?.claimUntil)).toEqual([undefined, 50_000, undefined, undefined, 50_000])
      expect(renewed[1]).toEqual(yield* getRow(a))
      expect(yield* getRow(a)).toMatchObject({ claimUntil: 50_000, updatedAt: 100 })
      expect(yield* getRow(c)).toMatchObject({ claimUntil: 10_000 })
      expect(yield* j.renew("A", [], 1)).toEqual([])
    })
  )

  test(
    "signal: the first value wins, bumps the inbox version, and is listed in arrival order",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      expect(yield* j.signal(k, "s", "1", 10)).toBeUndefined()
      yield* j.commit([start(k)])
      const first = yield* j.signal(k, "zeta", `{"v":1}`, 110)
      expect(first?.stored).toEqual(`{"v":1}`)
      expect(first?.row).toMatchObject({ inboxVersion: 1, updatedAt: 110 })
      expect(first?.row).toEqual(yield* getRow(k))
      const again = yield* j.signal(k, "zeta", `{"v":2}`, 120)
      expect(again).toEqual({ stored: `{"v":1}`, row: first?.row })
      const second = yield* j.signal(k, "alpha", `"a"`, 110)
      expect(second?.row.inboxVersion).toEqual(2)
      expect(yield* j.signals(k)).toEqual([
        { name: "zeta", value: `{"v":1}`, createdAt: 110 },
        { name: "alpha", value: `"a"`, createdAt: 110 }
      ])
      expect(yield* j.signals(key("missing"))).toEqual([])
      // Terminal executions still take signals (the engine ignores them).
      yield* j.commit([append(k, fence(), [], { status: "completed", result: "r", completedAt: 130 })])
      expect((yield* j.signal(k, "late", "1", 140))?.row).toMatchObject({ inboxVersion: 3, status: "completed" })
    })
  )

  test(
    "requestCancel flags a non-terminal execution and bumps its inbox; a terminal one is returned unchanged",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      expect(yield* j.requestCancel(k, 10)).toBeUndefined()
      yield* j.commit([start(k)])
      const row = yield* j.requestCancel(k, 150)
      expect(row).toMatchObject({ cancelRequested: true, inboxVersion: 1, updatedAt: 150 })
      expect(yield* j.requestCancel(k, 160)).toMatchObject({ cancelRequested: true, inboxVersion: 2 })
      yield* j.commit([append(k, fence(), [event(0)], { cancelHandled: true }, 170)])
      expect(yield* getRow(k)).toMatchObject({ cancelRequested: false, inboxVersion: 2, updatedAt: 170 })
      yield* j.commit([append(k, fence(), [], { status: "cancelled", result: "c", completedAt: 180 })])
      const terminal = yield* getRow(k)
      expect(yield* j.requestCancel(k, 190)).toEqual(terminal)
      expect(yield* getRow(k)).toEqual(terminal)
    })
  )

  test(
    "resume makes a suspended execution runnable and unclaimed; others are returned unchanged",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const k = key("e1")
      expect(yield* j.resume(k, 10)).toBeUndefined()
      yield* j.commit([start(k)])
      const running = yield* getRow(k)
      expect(yield* j.resume(k, 150)).toEqual(running)
      yield* j.commit([suspend(k, fence(), 0, { suspendedOn: "yield", wakeAt: 7_000 })])
      const resumed = yield* j.resume(k, 400)
      expect(resumed).toMatchObject({
        status: "running",
        suspendedOn: null,
        wakeAt: null,
        claimOwner: null,
        inboxVersion: 1,
        updatedAt: 400
      })
      expect(yield* j.resumable(["wf"], "nobody", 401, 10)).toEqual([k])
    })
  )

  test(
    "timers: nextWakeAt and dueTimers in deadline order, per workflow, bounded",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const owner = fence()
      const deadlines: Array<[string, string, number | null]> = [
        ["wf", "t3", 3_000],
        ["wf", "t1", 1_000],
        ["wf", "t2b", 2_000],
        ["wf", "t2a", 2_000],
        ["other", "o1", 500],
        ["wf", "signal", null]
      ]
      for (const [workflow, id, wakeAt] of deadlines) {
        yield* j.commit([start(key(id, workflow))])
        yield* j.commit([suspend(key(id, workflow), owner, 0, { wakeAt })])
      }
      yield* j.commit([start(key("running"))])
      expect(yield* j.nextWakeAt(["wf"])).toEqual(1_000)
      expect(yield* j.nextWakeAt(["wf", "other"])).toEqual(500)
      expect(yield* j.nextWakeAt(["nothing"])).toBeUndefined()
      expect(yield* j.nextWakeAt([])).toBeUndefined()
      expect(yield* j.dueTimers(["wf"], 999, 10)).toEqual([])
      expect(yield* j.dueTimers(["wf"], 2_000, 10)).toEqual([key("t1"), key("t2a"), key("t2b")])
      expect(yield* j.dueTimers(["wf", "other"], 10_000, 3)).toEqual([
        key("o1", "other"),
        key("t1"),
        key("t2a")
      ])
      expect(yield* j.dueTimers(["wf"], 10_000, 0)).toEqual([])
      // A claimed timer is no longer due.
      yield* j.claim(key("t1"), "B", 2_000, 9_000)
      expect(yield* j.dueTimers(["wf"], 2_000, 10)).toEqual([key("t2a"), key("t2b")])
      expect(yield* j.nextWakeAt(["wf"])).toEqual(2_000)
    })
  )

  test(
    "resumable: running executions without a live claim of someone else, oldest first",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      yield* j.commit([start(key("mine"), { owner: "A", claimUntil: 5_000, now: 30 })])
      yield* j.commit([start(key("theirs"), { owner: "B", claimUntil: 5_000, now: 10 })])
      yield* j.commit([start(key("expired"), { owner: "B", claimUntil: 1_000, now: 20 })])
      yield* j.commit([start(key("suspended"), { owner: "B", now: 5 })])
      yield* j.commit([suspend(key("suspended"), fence("B"), 0)])
      yield* j.commit([start(key("done"), { owner: "B", now: 1 })])
      yield* j.commit([append(key("done"), fence("B"), [], { status: "completed", result: "r", completedAt: 2 })])
      yield* j.commit([start(key("x", "other"), { owner: "B", claimUntil: 0, now: 0 })])
      yield* j.commit([start(key("yielded"), { owner: "B", now: 40 })])
      yield* j.commit([suspend(key("yielded"), fence("B"), 0, { suspendedOn: "yield", wakeAt: null })])
      yield* j.resume(key("yielded"), 50)
      expect(yield* j.resumable(["wf"], "A", 2_000, 10)).toEqual([key("expired"), key("mine"), key("yielded")])
      expect(yield* j.resumable(["wf"], "A", 2_000, 2)).toEqual([key("expired"), key("mine")])
      expect(yield* j.resumable(["wf"], "C", 500, 10)).toEqual([key("yielded")])
      expect(yield* j.resumable(["wf", "other"], "C", 6_000, 10)).toEqual([
        key("x", "other"),
        key("theirs"),
        key("expired"),
        key("mine"),
        key("yielded")
      ])
      expect(yield* j.resumable([], "C", 6_000, 10)).toEqual([])
    })
  )

  test(
    "list filters by workflow and status and pages by (workflow, executionId)",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const ids = ["b", "a", "c", "B", "a-1", "é", "z"]
      for (const id of ids) yield* j.commit([start(key(id))])
      yield* j.commit([start(key("a", "alpha")), start(key("m", "zulu"))])
      yield* j.commit([append(key("c"), fence(), [], { status: "completed", result: "r", completedAt: 1 })])
      const all = yield* j.list({ workflows: ["wf", "alpha", "zulu"], limit: 100 })
      expect(all.map((r) => `${r.workflow}/${r.executionId}`)).toEqual([
        "alpha/a",
        "wf/B",
        "wf/a",
        "wf/a-1",
        "wf/b",
        "wf/c",
        "wf/z",
        "wf/é",
        "zulu/m"
      ])
      // Keyset paging reproduces the full listing.
      const paged: Array<string> = []
      let after: ReturnType<typeof key> | undefined = undefined
      while (true) {
        const page: ReadonlyArray<ExecutionRow> = yield* j.list({
          workflows: ["wf", "alpha", "zulu"],
          limit: 2,
          after
        })
        if (page.length === 0) break
        for (const row of page) paged.push(`${row.workflow}/${row.executionId}`)
        const last = page[page.length - 1]!
        after = { workflow: last.workflow, executionId: last.executionId }
      }
      expect(paged).toEqual(all.map((r) => `${r.workflow}/${r.executionId}`))
      expect((yield* j.list({ workflows: ["wf"], status: "completed", limit: 10 })).map((r) => r.executionId))
        .toEqual(["c"])
      expect(
        (yield* j.list({ workflows: ["wf"], status: "running", limit: 10, after: key("a-1") })).map((r) =>
          r.executionId
        )
      ).toEqual(["b", "z", "é"])
      expect(yield* j.list({ workflows: ["wf"], limit: 0 })).toEqual([])
      expect(yield* j.list({ workflows: [], limit: 10 })).toEqual([])
      expect(all[0]).toEqual(yield* getRow(key("a", "alpha")))
    })
  )

  test(
    "deleteCompleted removes terminal executions completed before the cut-off, with their events and signals",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const finish = (id: string, status: "completed" | "failed" | "cancelled", completedAt: number) =>
        Effect.gen(function*() {
          yield* j.commit([start(key(id))])
          yield* j.signal(key(id), "s", "1", 100)
          yield* j.commit([append(key(id), fence(), [event(0), event(1)], { status, result: "r", completedAt })])
        })
      yield* finish("old1", "completed", 1_000)
      yield* finish("old2", "failed", 1_999)
      yield* finish("old3", "cancelled", 500)
      yield* finish("new", "completed", 2_000)
      yield* j.commit([start(key("running"))])
      expect(yield* j.deleteCompleted(2_000)).toEqual(3)
      for (const id of ["old1", "old2", "old3"]) {
        expect(yield* j.get(key(id))).toEqual(Option.none())
        expect(yield* j.events(key(id), 0)).toEqual([])
        expect(yield* j.signals(key(id))).toEqual([])
      }
      expect((yield* j.events(key("new"), 0)).length).toEqual(2)
      expect(Option.isSome(yield* j.get(key("running")))).toBe(true)
      expect(yield* j.deleteCompleted(2_000)).toEqual(0)
      // The id can be started afresh.
      expect(yield* j.commit([start(key("old1"))])).toEqual([{ _tag: "Created", epoch: 1 }])
    })
  )

  test(
    "stores text and numbers exactly: unicode, quotes, large JSON, 64-bit-range timestamps",
    Effect.gen(function*() {
      const j = yield* DurableExecutionJournal
      const weird = `it's "quoted" \\ back\\slash, ünïcödé 🎉, NUL-free, \n newline, ' OR 1=1; --`
      const k = key(weird, `wf ${weird}`)
      const big = 2 ** 52 + 1
      const payload = JSON.stringify({ text: weird, list: Array.from({ length: 2_000 }, (_, i) => i) })
      expect(yield* j.commit([start(k, { payload, payloadHash: weird, claimUntil: big, now: big - 10 })])).toEqual([
        { _tag: "Created", epoch: 1 }
      ])
      expect(yield* getRow(k)).toMatchObject({
        workflow: `wf ${weird}`,
        executionId: weird,
        payload,
        payloadHash: weird,
        claimUntil: big,
        createdAt: big - 10
      })
      const ev = event(0, { body: payload, stepId: weird, stepScope: weird, kind: weird, attempt: 2 ** 30 })
      expect(yield* j.commit([append(k, fence(), [ev])])).toEqual([{ _tag: "Ok" }])
      expect(yield* j.events(k, 0)).toEqual([ev])
      expect((yield* j.signal(k, weird, weird, big))?.stored).toEqual(weird)
      expect(yield* j.signals(k)).toEqual([{ name: weird, value: weird, createdAt: big }])
      expect(yield* j.list({ workflows: [`wf ${weird}`], limit: 5 })).toHaveLength(1)
    })
  )
})
