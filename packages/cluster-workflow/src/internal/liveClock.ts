/**
 * The live clock: what the engine and the SQL journal sleep on when a wait must pass in real time even
 * under TestClock (retry back-offs, polls, liveness checks). One definition for the whole package.
 *
 * @internal
 */
import * as Clock from "effect/Clock"

/** @internal */
export const liveClock: Clock.Clock = Clock.make()
