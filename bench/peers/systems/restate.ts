/**
 * `pnpm bench:peers`: one case on Restate (server 1.7 from the registry package, started by the parent with
 * its own storage in a temporary directory, loopback only) and its TypeScript SDK 1.17, whose endpoint
 * this process serves on 127.0.0.1. Workflows are started through the server's ingress over HTTP, the
 * recommended client path: `POST /ProcessPayment/<id>/run` awaits the result; `.../run/send` only starts.
 *
 * The same workflow as every other system: 3 `ctx.run` steps inside the handler (built on every call),
 * a unique workflow key per call; sleepers use `ctx.sleep` (a durable timer in the server).
 */
import { createServer } from "node:http2"
import { activityBody, amountDue, type CaseResult, type CaseSpec, closedLoop, main, runTag, sleepers, trackingCode, wokeAt } from "../common.js"

// The SDK needs `Promise.withResolvers` (Node 22); Node 20 lacks it.
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== "function") {
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
process.env.RESTATE_LOGGING ??= "WARN"

interface Payment {
  readonly orderId: string
  readonly cardNumber: string
  readonly email: string
  readonly deliveryAddress: string
}

const post = async (url: string, body: unknown): Promise<unknown> => {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${url}: ${response.status} ${text}`)
  return text.length === 0 ? undefined : JSON.parse(text)
}

const run = async (spec: CaseSpec): Promise<CaseResult> => {
  if (spec.restate === undefined) throw new Error("Restate needs the server the parent starts")
  const { ingress, admin } = spec.restate
  const restate = await import("@restatedev/restate-sdk")
  const processPayment = restate.workflow({
    name: "ProcessPayment",
    handlers: {
      run: async (ctx: any, payment: Payment): Promise<number> => {
        const totalAmount = await ctx.run(`get-amount-due-${payment.orderId}`, () => activityBody(spec.workload, amountDue))
        await ctx.run(`charge-credit-card-${payment.cardNumber}`, () => activityBody(spec.workload, void totalAmount))
        return ctx.run(
          `create-shipping-tracking-code-${payment.deliveryAddress}`,
          () => activityBody(spec.workload, trackingCode)
        )
      }
    }
  })
  const nap = restate.workflow({
    name: "Nap",
    handlers: {
      run: async (ctx: any, input: { id: string; wakeAt: number }): Promise<number> => {
        const now: number = await ctx.run("now", async () => Date.now())
        await ctx.sleep(Math.max(0, input.wakeAt - now))
        return ctx.run("woke", async () => {
          wokeAt.set(input.id, Date.now())
          return 0
        })
      }
    }
  })
  const server = createServer(restate.endpoint().bind(processPayment).bind(nap).http2Handler())
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no endpoint address")
  await post(`${admin}/deployments`, { uri: `http://127.0.0.1:${address.port}` })

  const result = spec.workload === "sleepers"
    ? await sleepers(spec, async (id, wakeAt) => {
      await post(`${ingress}/Nap/${id}/run/send`, { id, wakeAt })
    })
    : await closedLoop(spec, async (i) => {
      const orderId = `order-${runTag}-${i}`
      const payment: Payment = {
        orderId,
        cardNumber: `card-${i}`,
        email: `customer-${i}@example.com`,
        deliveryAddress: `${i} Main Street`
      }
      const code = await post(`${ingress}/ProcessPayment/${orderId}/run`, payment)
      if (code !== trackingCode) throw new Error(`wrong result ${String(code)}`)
    })
  server.close()
  return result
}

main(run)
