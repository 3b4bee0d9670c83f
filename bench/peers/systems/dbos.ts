/**
 * `pnpm bench:peers`: one case on DBOS Transact (`@dbos-inc/dbos-sdk` 5.3) with its system database on
 * the case's PostgreSQL database, driven with the calls its documentation recommends:
 * `DBOS.startWorkflow(workflow, { workflowID })(...args)` then `handle.getResult()`.
 *
 * The same workflow as every other system: 3 steps run with `DBOS.runStep` inside the body (built on
 * every call), a unique workflow id per call; sleepers use `DBOS.sleep` (a durable sleep).
 */
import { DBOS } from "@dbos-inc/dbos-sdk"
import { activityBody, amountDue, type CaseResult, type CaseSpec, closedLoop, main, runTag, sleepers, trackingCode, wokeAt } from "../common.js"

const run = async (spec: CaseSpec): Promise<CaseResult> => {
  if (spec.databaseUrl === undefined) throw new Error("DBOS needs a PostgreSQL database")
  const processPayment = DBOS.registerWorkflow(
    async (orderId: string, cardNumber: string, _email: string, deliveryAddress: string): Promise<number> => {
      const totalAmount = await DBOS.runStep(() => activityBody(spec.workload, amountDue), {
        name: `get-amount-due-${orderId}`
      })
      await DBOS.runStep(() => activityBody(spec.workload, void totalAmount), { name: `charge-credit-card-${cardNumber}` })
      return DBOS.runStep(() => activityBody(spec.workload, trackingCode), {
        name: `create-shipping-tracking-code-${deliveryAddress}`
      })
    },
    { name: "processPayment" }
  )
  const nap = DBOS.registerWorkflow(
    async (id: string, wakeAt: number): Promise<number> => {
      const now = await DBOS.runStep(async () => Date.now(), { name: "now" })
      await DBOS.sleep(Math.max(0, wakeAt - now))
      return DBOS.runStep(async () => {
        wokeAt.set(id, Date.now())
        return 0
      }, { name: "woke" })
    },
    { name: "nap" }
  )
  DBOS.setConfig({ name: "bench", systemDatabaseUrl: spec.databaseUrl, logLevel: "warn" })
  await DBOS.launch()
  const result = spec.workload === "sleepers"
    ? await sleepers(spec, async (id, wakeAt) => {
      await DBOS.startWorkflow(nap, { workflowID: id })(id, wakeAt)
    })
    : await closedLoop(spec, async (i) => {
      const orderId = `order-${runTag}-${i}`
      const handle = await DBOS.startWorkflow(processPayment, { workflowID: orderId })(
        orderId,
        `card-${i}`,
        `customer-${i}@example.com`,
        `${i} Main Street`
      )
      const code = await handle.getResult()
      if (code !== trackingCode) throw new Error(`wrong result ${code}`)
    })
  await DBOS.shutdown()
  return result
}

main(run)
