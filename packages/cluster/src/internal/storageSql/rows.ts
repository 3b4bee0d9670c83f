/**
 * Row values and errors of the SQL storage.
 */
import { StorageException } from "../../Storage.js"

export type Rows = ReadonlyArray<Record<string, unknown>>

/** A numeric column: PostgreSQL returns BIGINT as a string, libsql may return a bigint. */
export const num = (value: unknown): number => typeof value === "number" ? value : Number(value)

export const toStorageException = (what: string, error: unknown): StorageException =>
  error instanceof StorageException
    ? error
    : new StorageException({
      reason: `${what}: ${error instanceof Error ? error.message : String(error)}`,
      cause: error
    })
