/**
 * Engine liveness on a SQL journal: engines register how others can tell that they died, dead engines'
 * claims are released at once, and inbox changes are announced to the live ones.
 *
 * - PostgreSQL: an engine holds one session of the pool open for its lifetime and registers that
 *   session's backend (pid and start time). A killed process's session ends with it, so another engine
 *   sees, in `pg_stat_activity`, that it is gone. Inbox changes are announced with NOTIFY on
 *   `<prefix>_inbox` and heard through `PgClient.listen`.
 * - SQLite (one machine): an engine registers its host, pid and process start time; another engine on the
 *   same host checks that the process is gone (`ProcessLiveness`). Changes by other processes are noticed
 *   by polling `PRAGMA data_version` (it changes when another connection commits).
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { EngineRegistration, ExecutionKey } from "../journal.js"
import { JournalError } from "../journal.js"
import type { SqlContext } from "./context.js"
import { toJournalError } from "./errors.js"
import type { ProcessLiveness } from "./liveness.js"
import type { Row } from "./rows.js"
import { num, renewSource, str, strOrNull } from "./rows.js"
import { announcedBy } from "../announcer.js"
import { liveClock } from "../liveClock.js"


/** How often a SQLite engine checks whether another process changed the database. */
export const sqliteChangePollInterval = Duration.millis(200)

/**
 * How often a PostgreSQL engine checks that its liveness session is still there, and how long that check
 * may take: a check that finds the session gone (or fails) counts as the session lost, so an engine
 * notices within `sessionCheckInterval` plus the check's own time and stops its executions. A check that
 * does not answer for `sessionCheckTimeout` counts as lost too (a database out of reach); not sooner, so
 * that a slow answer on a busy machine does not stop every execution.
 */
const sessionCheckInterval = Duration.millis(300)
const sessionCheckTimeout = Duration.seconds(5)

/**
 * How long (live clock) another engine must still be seen dead before its claims are released: longer
 * than a live engine needs to notice that its own session was lost and stop its executions (above: the
 * check's interval plus its time, under 0.6 s unless the database is slow to answer), so
 * an engine whose session ended while its process lives (a network blip, `pg_terminate_backend`) has
 * stopped before anyone takes its executions over. docs/engine.md, "Crashes, restarts and shutdown".
 *
 * @internal
 */
export const deadEngineGrace = Duration.millis(900)

interface PgListener {
  readonly listen: (channel: string) => Stream.Stream<string, SqlError>
}

const pgListener = (client: unknown): PgListener | undefined =>
  typeof (client as PgListener).listen === "function" ? client as PgListener : undefined

/**
 * Runs a LISTEN stream until the scope closes, without waiting for its UNLISTEN at the close (a
 * connection that no longer answers must not keep the engine from shutting down).
 */
const listenDetached = (stream: Effect.Effect<void>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(
    Effect.forkDaemon(stream),
    (fiber) => Effect.addFinalizer(() => Fiber.interruptFork(fiber))
  )

/**
 * The NOTIFY payload of an inbox change: `[workflow, executionId]`, and the registration instance that
 * made the change when an engine did (see announcer.ts).
 */
const changePayload = (key: ExecutionKey, origin: string | undefined) =>
  JSON.stringify(origin === undefined ? [key.workflow, key.executionId] : [key.workflow, key.executionId, origin])

/** A payload's execution and origin; an execution of undefined for a payload that names none. */
const parsePayload = (payload: string): { readonly key: ExecutionKey | undefined; readonly origin?: string | undefined } => {
  try {
    const [workflow, executionId, origin] = JSON.parse(payload) as [unknown, unknown, unknown]
    return typeof workflow === "string" && typeof executionId === "string"
      ? { key: { workflow, executionId }, origin: typeof origin === "string" ? origin : undefined }
      : { key: undefined }
  } catch {
    return { key: undefined }
  }
}

/**
 * Announces that an execution's inbox changed or that it became runnable (PostgreSQL: NOTIFY, delivered
 * when the surrounding transaction commits; SQLite: nothing to do, others poll).
 *
 * @internal
 */
export const announce = (ctx: SqlContext, key: ExecutionKey): Effect.Effect<void, SqlError> =>
  ctx.dialect === "pg"
    ? Effect.flatMap(FiberRef.get(announcedBy), (origin) =>
      Effect.asVoid(ctx.sql`SELECT pg_notify(${ctx.tables.channel}, ${changePayload(key, origin)})`))
    : Effect.void

interface Backend {
  readonly pid: number
  readonly start: string
}

/**
 * The LISTEN session of one `PgClient`, shared by all the engines of the process on that client (all
 * their LISTENs go through that one connection, whose `query` column shows only the last statement): it
 * is looked up once, under a lock, and reused while it lives.
 */
interface SharedSession {
  readonly lock: Effect.Semaphore
  backend: Backend | undefined
}

const sharedSessions = new WeakMap<object, SharedSession>()

const sharedSessionOf = (listener: PgListener): SharedSession => {
  let shared = sharedSessions.get(listener)
  if (shared === undefined) {
    shared = { lock: Effect.unsafeMakeSemaphore(1), backend: undefined }
    sharedSessions.set(listener, shared)
  }
  return shared
}

const sessionRows = (ctx: SqlContext, backend: Backend) =>
  ctx.sql<Row>`SELECT 1 AS alive FROM pg_stat_activity WHERE pid = ${backend.pid} AND backend_start::text = ${backend.start}`

/** The client's LISTEN session: the one already found while it lives, else found by this LISTEN's text. */
const findSession = (ctx: SqlContext, shared: SharedSession, listen: string) =>
  Effect.gen(function*() {
    if (shared.backend !== undefined) {
      if ((yield* sessionRows(ctx, shared.backend)).length > 0) return shared.backend
      shared.backend = undefined
    }
    for (let attempt = 0; attempt < 150; attempt++) {
      yield* Effect.withClock(Effect.sleep(Duration.millis(20)), liveClock)
      const found = yield* ctx.sql<Row>`SELECT pid, backend_start::text AS start FROM pg_stat_activity
WHERE query = ${listen} AND backend_start IS NOT NULL`
      if (found.length > 0) {
        shared.backend = { pid: num(found[0]!.pid), start: str(found[0]!.start) }
        return shared.backend
      }
    }
    return undefined
  })

/**
 * Binds the engine's liveness to a PostgreSQL session: the dedicated LISTEN session of `PgClient`
 * (outside the pool, closed with the client), found in `pg_stat_activity` by the LISTEN of a channel
 * unique to this registration (once per client: see `SharedSession`). `lost` fails when that session is
 * gone, or when the check does not answer within `sessionCheckTimeout` (checked every
 * `sessionCheckInterval`).
 */
const holdSession = (ctx: SqlContext, listener: PgListener, instance: string) =>
  Effect.gen(function*() {
    const channel = `${ctx.tables.channel}_${instance.replace(/[^A-Za-z0-9]/g, "").slice(-12)}`
    const shared = sharedSessionOf(listener)
    // under the lock, so no other engine's LISTEN replaces this one's text on the connection meanwhile;
    // this engine's own LISTEN also keeps the client's LISTEN connection open while it is registered
    const backend = yield* shared.lock.withPermits(1)(Effect.zipRight(
      listenDetached(Effect.ignore(Stream.runDrain(listener.listen(channel)))),
      findSession(ctx, shared, `LISTEN "${channel}"`)
    ))
    if (backend === undefined) return undefined
    const lostSession = (message: string) => {
      if (shared.backend === backend) shared.backend = undefined
      return new JournalError({ operation: "liveness", message, retryable: true })
    }
    const lost: Effect.Effect<never, JournalError> = Effect.withClock(Effect.sleep(sessionCheckInterval), liveClock).pipe(
      Effect.zipRight(
        Effect.withClock(
          Effect.timeoutFail(Effect.mapError(sessionRows(ctx, backend), (error) => toJournalError("liveness", error)), {
            duration: sessionCheckTimeout,
            onTimeout: () => lostSession("the check of the engine's liveness session did not answer in time")
          }),
          liveClock
        )
      ),
      Effect.flatMap((rows) =>
        rows.length > 0 ? Effect.void : Effect.fail(lostSession("the engine's liveness session ended"))
      ),
      Effect.forever
    )
    return { backend, lost }
  })

/**
 * Registers an engine (see `Journal.registerEngine`).
 *
 * @internal
 */
export const registerEngine = (ctx: SqlContext, liveness: Option.Option<ProcessLiveness>) =>
(
  owner: string,
  workflows: ReadonlyArray<string>
): Effect.Effect<EngineRegistration, JournalError, Scope.Scope> =>
  Effect.gen(function*() {
    const { sql } = ctx
    const instance = `${owner}/${(yield* Random.nextIntBetween(0, 2 ** 30)).toString(36)}${
      (yield* Random.nextIntBetween(0, 2 ** 30)).toString(36)
    }`
    const listener = pgListener(ctx.client)
    const session = ctx.dialect === "pg" && listener !== undefined
      ? yield* Effect.mapError(holdSession(ctx, listener, instance), (error) => toJournalError("registerEngine", error))
      : undefined
    if (ctx.dialect === "pg" && listener !== undefined && session === undefined) {
      // (the engine logs it, and registers again later: see `Liveness.register`)
      return yield* new JournalError({
        operation: "registerEngine",
        message: "the engine's LISTEN session was not found in pg_stat_activity",
        retryable: true
      })
    }
    if (ctx.dialect === "pg" && listener === undefined) {
      yield* Effect.logWarning(
        "the engine registered without liveness (the client cannot LISTEN): others resume its executions only at its claims' end"
      ).pipe(Effect.annotateLogs({ engine: instance }))
    }
    const process = ctx.dialect === "sqlite" ? Option.getOrUndefined(liveness) : undefined
    const now = yield* Clock.currentTimeMillis
    yield* ctx.operation(
      "registerEngine",
      sql`INSERT INTO ${sql(ctx.tables.engines)} (instance, owner, workflows, host, pid, process_start, backend_pid,
  backend_start, started_at)
VALUES (${instance}, ${owner}, ${JSON.stringify(workflows)}, ${process?.host ?? null}, ${process?.pid ?? null},
  ${process?.startTime ?? null}, ${session?.backend.pid ?? null}, ${session?.backend.start ?? null}, ${now})`
    )
    yield* Effect.addFinalizer(() =>
      Effect.ignore(ctx.operation("unregisterEngine", sql`DELETE FROM ${sql(ctx.tables.engines)} WHERE instance = ${instance}`))
    )
    const watchChanges = ctx.dialect === "pg"
      ? listener === undefined ? undefined : (onChange: (key: ExecutionKey | undefined) => void) =>
        listenDetached(
          listener.listen(ctx.tables.channel).pipe(
            Stream.runForEach((payload) =>
              Effect.sync(() => {
                const change = parsePayload(payload)
                // (this registration's own change: its engine has acted on it already)
                if (change.origin !== instance) onChange(change.key)
              })
            ),
            Effect.catchAll((error) => Effect.logWarning("stopped listening for inbox changes", error))
          )
        )
      : (onChange: (key: ExecutionKey | undefined) => void) =>
        Effect.asVoid(Effect.forkScoped(Effect.gen(function*() {
          let seen: number | undefined
          while (true) {
            yield* Effect.withClock(Effect.sleep(sqliteChangePollInterval), liveClock)
            const rows = yield* Effect.either(sql<Row>`PRAGMA data_version`)
            if (rows._tag === "Left") continue
            const version = num(Object.values(rows.right[0] ?? {})[0])
            if (seen !== undefined && version !== seen) onChange(undefined)
            seen = version
          }
        })))
    return {
      instance,
      owner,
      liveness: session !== undefined ? "session" : process !== undefined ? "process" : "none",
      watchChanges,
      lost: session?.lost ?? Effect.never
    } satisfies EngineRegistration
  })

interface EngineRow {
  readonly instance: string
  readonly owner: string
  readonly workflows: string
  readonly alive: boolean | undefined
}

/** The registered engines (but `self`) and whether each is alive (undefined: cannot tell). */
const engines = (ctx: SqlContext, liveness: Option.Option<ProcessLiveness>, self: string | undefined) =>
  Effect.map(
    ctx.dialect === "pg"
      // backend_start is NULL for a session of a role whose statistics the viewer may not read: cannot tell
      ? ctx.sql<Row>`SELECT e.instance, e.owner, e.workflows, e.backend_pid, (SELECT CASE
    WHEN a.backend_start IS NULL THEN 'unknown' WHEN a.backend_start::text = e.backend_start THEN 'alive' ELSE 'dead' END
  FROM pg_stat_activity a WHERE a.pid = e.backend_pid LIMIT 1) AS state
FROM ${ctx.sql(ctx.tables.engines)} AS e`
      : ctx.sql<Row>`SELECT instance, owner, workflows, host, pid, process_start FROM ${ctx.sql(ctx.tables.engines)}`,
    (rows) =>
      rows.filter((r) => str(r.instance) !== self).map((r): EngineRow => {
        const base = { instance: str(r.instance), owner: str(r.owner), workflows: str(r.workflows) }
        if (ctx.dialect === "pg") {
          // no session with that pid: dead; with it and another start: dead (pid reused); start hidden: cannot tell
          const state = strOrNull(r.state)
          return {
            ...base,
            alive: r.backend_pid === null || r.backend_pid === undefined || state === "unknown"
              ? undefined
              : state === "alive"
          }
        }
        const process = Option.getOrUndefined(liveness)
        const host = strOrNull(r.host)
        return {
          ...base,
          alive: process === undefined || host === null || r.pid === null || r.pid === undefined
            ? undefined
            : process.isAlive(host, num(r.pid), strOrNull(r.process_start))
        }
      })
  )

/**
 * Releases the claims of dead engines (see `Journal.releaseDeadClaims`). On PostgreSQL an engine seen
 * dead is released only once it is still dead `deadEngineGrace` later (live clock): while an engine seen
 * dead is in its grace (and none is released now), this call waits (live clock) for the grace's end and
 * looks again, so a dead engine's executions resume one grace after it is first seen dead, not at a later
 * check. On SQLite a process seen gone is gone: released at once.
 *
 * @internal
 */
export const releaseDeadClaims = (ctx: SqlContext, liveness: Option.Option<ProcessLiveness>) => {
  const grace = ctx.dialect === "pg" ? Duration.toMillis(deadEngineGrace) : 0
  // when each engine was first seen dead (live clock)
  const seenDead = new Map<string, number>()
  const look = (self: EngineRegistration | undefined) =>
    Effect.gen(function*() {
      const seen = (yield* ctx.read("releaseDeadClaims", engines(ctx, liveness, self?.instance)))
        .filter((engine) => engine.alive === false)
      const liveNow = yield* Effect.withClock(Clock.currentTimeMillis, liveClock)
      const stillDead = new Set(seen.map((engine) => engine.instance))
      for (const instance of seenDead.keys()) if (!stillDead.has(instance)) seenDead.delete(instance)
      for (const instance of stillDead) if (!seenDead.has(instance)) seenDead.set(instance, liveNow)
      const left = (engine: EngineRow) => seenDead.get(engine.instance)! + grace - liveNow
      const dead = seen.filter((engine) => left(engine) <= 0)
      const wait = Math.min(...seen.filter((engine) => left(engine) > 0).map(left))
      return { dead, wait }
    })
  const releaseOf = (dead: ReadonlyArray<EngineRow>) =>
    Effect.gen(function*() {
      if (dead.length === 0) return 0
      const { E, sql } = ctx
      const now = yield* Clock.currentTimeMillis
      const G = sql(ctx.tables.engines)
      return yield* ctx.transaction(
        "releaseDeadClaims",
        Effect.gen(function*() {
          yield* sql`DELETE FROM ${G} WHERE instance IN ${sql.in(dead.map((engine) => engine.instance))}`
          // An owner is dead once none of its registered instances is left (one identity may run several).
          const released = yield* sql<Row>`UPDATE ${E} AS x SET claim_owner = NULL, claim_until = NULL, updated_at = ${now}
WHERE x.status = 'running' AND x.claim_owner IN ${sql.in(Array.from(new Set(dead.map((engine) => engine.owner))))}
  AND NOT EXISTS (SELECT 1 FROM ${G} AS g WHERE g.owner = x.claim_owner)
RETURNING workflow, execution_id`
          return released.length
        })
      )
    })
  return (self: EngineRegistration | undefined): Effect.Effect<number, JournalError> =>
    Effect.gen(function*() {
      const first = yield* look(self)
      if (first.dead.length > 0 || !Number.isFinite(first.wait)) return yield* releaseOf(first.dead)
      yield* Effect.withClock(Effect.sleep(Duration.millis(first.wait)), liveClock)
      return yield* releaseOf((yield* look(self)).dead)
    })
}

/**
 * How many other live engines run `workflow` (see `Journal.otherLiveEngines`).
 *
 * @internal
 */
export const otherLiveEngines = (ctx: SqlContext, liveness: Option.Option<ProcessLiveness>) =>
(self: EngineRegistration, workflow: string): Effect.Effect<number, JournalError> =>
  Effect.map(
    ctx.read("otherLiveEngines", engines(ctx, liveness, self.instance)),
    (rows) =>
      rows.filter((engine) => {
        if (engine.alive !== true) return false
        try {
          return (JSON.parse(engine.workflows) as Array<string>).includes(workflow)
        } catch {
          return false
        }
      }).length
  )

/**
 * The claim of another engine that expires first (see `Journal.nextClaimExpiry`).
 *
 * @internal
 */
export const nextClaimExpiry = ({ E, inWorkflows, read, sql, time }: SqlContext) =>
(workflows: ReadonlyArray<string>, owner: string) =>
  workflows.length === 0 ? Effect.succeed(undefined) : read(
    "nextClaimExpiry",
    Effect.map(
      // ordered in the database's time, returned in the caller's clock (time.ts)
      sql<Row>`SELECT claim_owner, ${time.claimUntil} AS claim_until FROM ${E}
WHERE status = 'running' AND claim_owner IS NOT NULL AND claim_owner <> ${owner} AND claim_until IS NOT NULL
  AND ${inWorkflows(workflows)}
ORDER BY ${E}.claim_until
LIMIT 1`,
      (rows) => rows.length === 0 ? undefined : { owner: str(rows[0]!.claim_owner), claimUntil: num(rows[0]!.claim_until) }
    )
  )

/**
 * Gives up claims (see `Journal.release`); on PostgreSQL announces each released execution.
 *
 * @internal
 */
export const release = (ctx: SqlContext) =>
(
  owner: string,
  claims: ReadonlyArray<{ readonly key: ExecutionKey; readonly epoch: number }>
): Effect.Effect<number, JournalError> =>
  claims.length === 0 ? Effect.succeed(0) : ctx.transaction(
    "release",
    Effect.gen(function*() {
      const { E, source, sql } = ctx
      const rows = yield* sql<Row>`UPDATE ${E} AS x SET claim_owner = NULL, claim_until = NULL
FROM ${source(renewSource, claims.map((c) => ({ w: c.key.workflow, e: c.key.executionId, epoch: c.epoch })))}
WHERE x.workflow = v.w AND x.execution_id = v.e AND x.claim_owner = ${owner} AND x.claim_epoch = v.epoch
  AND x.status = 'running'
RETURNING workflow, execution_id`
      for (const row of rows) yield* announce(ctx, { workflow: str(row.workflow), executionId: str(row.execution_id) })
      return rows.length
    })
  )
