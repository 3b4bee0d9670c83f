import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const run = (file: string) =>
  execFileSync(process.execPath, ["--conditions=source", "--import", "tsx", file], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000
  })

describe("examples", () => {
  it("pnpm start runs the demo and pnpm example:process-payment the seed program", () => {
    const scripts = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts
    expect(scripts.start).toBe("tsx --conditions=source examples/demo/main.ts")
    expect(scripts["example:process-payment"]).toBe("tsx --conditions=source examples/process-payment.ts")
  })

  it("process-payment (the seed program, `pnpm example:process-payment`) logs its activities then prints the tracking code", () => {
    const output = run("examples/process-payment.ts")
    const lines = output.trim().split("\n")
    expect(lines[0]).toContain("getTotalAmountActivity(order-1)")
    expect(lines[1]).toContain("chargeCreditCardActivity(my-card, 100)")
    expect(lines[2]).toContain("createShippingTrackingCodeActivity(My address)")
    expect(lines[3]).toBe("tracking code: 1")
  })

  it("process-payment-saga refunds the charge when shipping fails", () => {
    const output = run("examples/process-payment-saga.ts")
    const messages = output.trim().split("\n")
    expect(messages[0]).toContain("getTotalAmount(order-2)")
    expect(messages[1]).toContain("chargeCreditCard(my-card, 100)")
    expect(messages[2]).toContain("createShippingTrackingCode(Atlantis)")
    expect(messages[3]).toContain("refund(charge-my-card-100)")
    expect(messages[4]).toBe("failed: no carrier delivers to Atlantis")
  })
})
