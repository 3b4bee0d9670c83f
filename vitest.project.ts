import { defineProject } from "vitest/config"

/**
 * A package's test project: its sources resolved through the "source" export condition (no build needed).
 * `processes`: its files run pods, managers or the examples as processes, and run one at a time after the
 * other test files (`singleFork`), so nothing competes with their processes for the cores (a starved pod
 * loses its lease). See vitest.config.ts.
 */
export const packageProject = (options: {
  readonly name: string
  readonly include: Array<string>
  readonly exclude?: Array<string>
  readonly testTimeout: number
  readonly processes?: boolean
}) =>
  defineProject({
    ssr: { resolve: { conditions: ["source"] } },
    resolve: { conditions: ["source"] },
    test: {
      name: options.name,
      include: options.include,
      ...(options.exclude === undefined ? {} : { exclude: options.exclude }),
      testTimeout: options.testTimeout,
      hookTimeout: 60_000,
      ...(options.processes === true ? { poolOptions: { forks: { singleFork: true } } } : {})
    }
  })
