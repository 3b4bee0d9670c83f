/**
 * The parent side of the real-process tests (see children.ts), with the transpiled children removed after
 * each test file.
 */
import { afterAll } from "vitest"
import { removeChildren } from "./children.js"

export * from "./children.js"

afterAll(removeChildren)
