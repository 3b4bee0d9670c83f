/**
 * @since 0.1.0
 */
export * as DurableExecutionJournal from "./DurableExecutionJournal.js"
export * as DurableExecutionJournalInMemory from "./DurableExecutionJournalInMemory.js"
