/**
 * The `_tag` of CrashableRuntimeCrashedError as in 2024 (../shared/reference/api-2024.md): a 2024 program
 * that only renamed its imports still catches a crash with `Effect.catchTag` and the 2024 literal. If the tag
 * drifts, `catchTag` stops compiling (the root typecheck covers this file) and the `_tag` check fails.
 */
import * as CrashableRuntime from "@effect-cluster/cluster-workflow/CrashableRuntime"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

describe("2024 tag strings (cluster-workflow)", () => {
  it.effect("a 2024 program catches a crash with catchTag(\"@effect/cluster-workflow/CrashableRuntimeCrashedError\")", () =>
    Effect.gen(function*() {
      const outcome = yield* CrashableRuntime.runWithCrash((crash) => Effect.zipRight(crash, Effect.succeed("ran on"))).pipe(
        Effect.catchTag("@effect/cluster-workflow/CrashableRuntimeCrashedError", (error) => Effect.succeed(error._tag))
      )
      expect(outcome).toBe("@effect/cluster-workflow/CrashableRuntimeCrashedError")
    }))

  it("the encoded error carries the 2024 tag", () => {
    const error = new CrashableRuntime.CrashableRuntimeCrashedError()
    expect(CrashableRuntime.isCrashableRuntimeCrashedError(error)).toBe(true)
    expect(Schema.encodeSync(CrashableRuntime.CrashableRuntimeCrashedError)(error)).toEqual({
      _tag: "@effect/cluster-workflow/CrashableRuntimeCrashedError"
    })
  })
})
