/**
 * The systems `pnpm bench:peers` compares, the floors, and the cases it runs for each.
 */
import type { Workload } from "./common.js"

/** Where a system keeps its state; decides what the parent prepares for a case. */
export type Storage = "memory" | "sqlite" | "postgres" | "restate"

export interface SystemDef {
  readonly id: string
  readonly label: string
  readonly storage: Storage
  /** The child's script (relative to bench/) and extra arguments; undefined: run by the parent (pgbench). */
  readonly script?: { readonly path: string; readonly args: ReadonlyArray<string>; readonly project: boolean }
  /** The floor: what one "operation" is. */
  readonly floor?: "insert" | "pgbench"
}

const project = (id: string, storage: Storage, label: string): SystemDef => ({
  id,
  label,
  storage,
  script: { path: "peers-project.ts", args: [], project: true }
})

const peer = (id: string, storage: Storage, label: string, path: string, args: ReadonlyArray<string> = []): SystemDef => ({
  id,
  label,
  storage,
  script: { path, args, project: false }
})

/** Workflow systems, in table order. */
export const systems: ReadonlyArray<SystemDef> = [
  project("project-memory", "memory", "this project, in-memory journal"),
  project("project-sqlite", "sqlite", "this project, SQLite file"),
  project("project-pg", "postgres", "this project, PostgreSQL"),
  peer("effect-workflow", "memory", "@effect/workflow, in-memory engine", "peers/systems/effect-workflow.ts"),
  peer(
    "effect-cluster",
    "postgres",
    "@effect/cluster ClusterWorkflowEngine, SingleRunner, PostgreSQL",
    "peers/systems/effect-workflow.ts",
    ["--cluster"]
  ),
  peer("dbos", "postgres", "DBOS Transact, PostgreSQL", "peers/systems/dbos.ts"),
  peer("restate", "restate", "Restate (server + TS SDK)", "peers/systems/restate.ts")
]

/** The floors: what the database alone does with one commit per operation. */
export const floors: ReadonlyArray<SystemDef> = [
  { ...project("floor-pg", "postgres", "single-row INSERT, PostgreSQL (@effect/sql-pg)"), floor: "insert" },
  { ...project("floor-sqlite", "sqlite", "single-row INSERT, SQLite file (this project's libsql client)"), floor: "insert" },
  { id: "pgbench", label: "pgbench TPC-B (5 statements per transaction)", storage: "postgres", floor: "pgbench" }
]

/**
 * `baseline`: the system started and stopped with no workflow, on a fresh database, to count the commits
 * of setting it up (migrations, registration) and shutting it down; subtracted from every case's count.
 */
export type CaseWorkload = Workload | "baseline"

export interface CaseDef {
  readonly system: SystemDef
  readonly workload: CaseWorkload
  /** Callers (workflows in flight), or the floor's connections/clients. */
  readonly concurrency: number
}

/** Every case of a run, in the order they run. */
export const cases = (selected: ReadonlyArray<SystemDef>, options: { readonly sleepers: boolean }): Array<CaseDef> => {
  const result: Array<CaseDef> = []
  for (const system of selected) {
    if (system.storage === "postgres" && system.script !== undefined) {
      result.push({ system, workload: "baseline", concurrency: 1 })
    }
  }
  for (const workload of ["instant", "io"] as const) {
    for (const concurrency of [1, 64]) {
      for (const system of selected) if (system.floor === undefined) result.push({ system, workload, concurrency })
    }
  }
  for (const system of selected) {
    if (system.floor === undefined) continue
    // libsql's local mode is one synchronous connection: 10 "connections" would be 10 callers on it.
    const counts = system.storage === "sqlite" ? [1] : [1, 10]
    for (const concurrency of counts) result.push({ system, workload: "floor", concurrency })
  }
  if (options.sleepers) {
    for (const system of selected) {
      if (system.floor === undefined) result.push({ system, workload: "sleepers", concurrency: 64 })
    }
  }
  return result
}

export const caseKey = (c: { readonly system: SystemDef; readonly workload: CaseWorkload; readonly concurrency: number }) =>
  `${c.system.id}|${c.workload}|${c.concurrency}`
