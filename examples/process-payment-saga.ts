// The ProcessPayment workflow as a saga: the card is charged, then shipping fails, so the charge is
// refunded. The refund is registered with `Workflow.withCompensation` on the charge activity; the
// engine journals it, so a crash while compensating neither skips nor repeats a recorded refund.
// Run it with `pnpm exec tsx --conditions=source examples/process-payment-saga.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Cause, Effect, Exit, Option, Schema } from "effect"

class ProcessPaymentMessage extends Message.TaggedMessage<ProcessPaymentMessage>()(
  "ProcessPaymentMessage",
  Schema.String,
  Schema.Number,
  {
    orderId: Schema.String,
    cardNumber: Schema.String,
    email: Schema.String,
    deliveryAddress: Schema.String
  },
  (_) => _.orderId
) {}

const getTotalAmount = (orderId: string) =>
  Activity.make(`get-amount-due-${orderId}`, Schema.Number, Schema.String)(
    Effect.gen(function*() {
      yield* Effect.log(`getTotalAmount(${orderId})`)
      return 100
    })
  )

const chargeCreditCard = (cardNumber: string, totalAmount: number) =>
  Activity.make(`charge-credit-card-${cardNumber}`, Schema.String, Schema.String)(
    Effect.gen(function*() {
      yield* Effect.log(`chargeCreditCard(${cardNumber}, ${totalAmount})`)
      return `charge-${cardNumber}-${totalAmount}`
    })
  ).pipe(
    // runs only if the workflow fails (or is cancelled) after the charge succeeded
    Workflow.withCompensation((chargeId) => Effect.log(`refund(${chargeId})`))
  )

const createShippingTrackingCode = (deliveryAddress: string) =>
  Activity.make(`create-shipping-tracking-code-${deliveryAddress}`, Schema.Number, Schema.String)(
    Effect.gen(function*() {
      yield* Effect.log(`createShippingTrackingCode(${deliveryAddress})`)
      return yield* Effect.fail(`no carrier delivers to ${deliveryAddress}`)
    })
  )

export const processPaymentWorkflow = Workflow.make(ProcessPaymentMessage, (message) =>
  Effect.gen(function*() {
    const totalAmount = yield* getTotalAmount(message.orderId)
    yield* chargeCreditCard(message.cardNumber, totalAmount)
    return yield* createShippingTrackingCode(message.deliveryAddress)
  }))

export const program = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(processPaymentWorkflow)
  return yield* Effect.exit(engine.send(
    new ProcessPaymentMessage({
      orderId: "order-2",
      cardNumber: "my-card",
      deliveryAddress: "Atlantis",
      email: "my@email.com"
    })
  ))
}).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.runPromise(program).then((exit) =>
    console.log(
      Exit.isFailure(exit)
        ? `failed: ${Option.getOrElse(Cause.failureOption(exit.cause), () => Cause.pretty(exit.cause))}`
        : `tracking code: ${exit.value}`
    )
  )
}
