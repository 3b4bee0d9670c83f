/**
 * Which engine registration makes the journal writes of the current fiber. A SQL journal tags the change
 * announcements of those writes with it (PostgreSQL: in the NOTIFY payload), and the registration's own
 * watch drops them: the engine that wrote the change has already decided what to do about it (run it,
 * tell the runtime, or leave it to the other live engines), and hearing its own announcement again must
 * not make it claim what it meant to leave to others (a CLI that signals and exits).
 *
 * Kept free of imports from the rest of the package: the SQL journal and the engine both import it.
 *
 * @internal
 */
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"

/** The registration instance (see `EngineRegistration.instance`) making the current fiber's writes. @internal */
export const announcedBy: FiberRef.FiberRef<string | undefined> = globalValue(
  Symbol.for("@effect-cluster/cluster-workflow/announcedBy"),
  () => FiberRef.unsafeMake<string | undefined>(undefined)
)
