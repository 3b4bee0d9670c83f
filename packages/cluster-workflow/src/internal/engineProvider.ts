/**
 * The hook by which `WorkflowEngine.make` (and the 2024 `makeScoped`) builds another engine than the
 * in-process one: `ClusterWorkflowEngine.layer` provides it, so a program moves to the cluster by changing
 * a layer, not its code.
 *
 * @internal
 */
import type { Message } from "@effect-cluster/cluster"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { JournalError } from "./journal.js"
import type { Workflow } from "../Workflow.js"
import type { EngineOptions, WorkflowEngine } from "../WorkflowEngine.js"

/** @internal */
export interface EngineProviderService {
  readonly make: <T extends Message.Message.Any, R>(
    workflow: Workflow<T, R>,
    options: EngineOptions | undefined
  ) => Effect.Effect<WorkflowEngine<T>, JournalError, R | Scope.Scope>
}

/** @internal */
export class EngineProvider extends Context.Tag("@effect-cluster/cluster-workflow/EngineProvider")<
  EngineProvider,
  EngineProviderService
>() {}
