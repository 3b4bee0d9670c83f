/**
 * @since 0.1.0
 */
export * as Activity from "./Activity.js"
export * as ActivityContext from "./ActivityContext.js"
export * as ClusterWorkflowEngine from "./ClusterWorkflowEngine.js"
export * as CrashableRuntime from "./CrashableRuntime.js"
export * as DurableDeferred from "./DurableDeferred.js"
export * as DurableExecutionEvent from "./DurableExecutionEvent.js"
export * as DurableExecutionJournal from "./DurableExecutionJournal.js"
export * as DurableExecutionJournalInMemory from "./DurableExecutionJournalInMemory.js"
export * as DurableExecutionJournalSql from "./DurableExecutionJournalSql.js"
export * as Workflow from "./Workflow.js"
export * as WorkflowContext from "./WorkflowContext.js"
export * as WorkflowEngine from "./WorkflowEngine.js"
export * as WorkflowError from "./WorkflowError.js"
export * as WorkflowRuntime from "./WorkflowRuntime.js"
export * as WorkflowRuntimeMessage from "./WorkflowRuntimeMessage.js"
export * as WorkflowRuntimeState from "./WorkflowRuntimeState.js"
