// The seed program of effect-cluster: the 2024 ProcessPayment example with only its import lines
// changed (`@effect/cluster` -> `@effect-cluster/cluster`, `@effect/cluster-workflow` ->
// `@effect-cluster/cluster-workflow`, `@effect/schema` -> `effect`), plus a last step that prints the
// tracking code (the 2024 program discarded it). Run it with `pnpm example:process-payment`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Schema } from "effect"
import { Effect } from "effect"

// ---------------------------------------------
// message
// ---------------------------------------------

class ProcessPaymentMessage extends Message.TaggedMessage<ProcessPaymentMessage>()(
  `ProcessPaymentMessage`,
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

// ---------------------------------------------
// activities
// ---------------------------------------------

const getTotalAmountActivity = (orderId: string) =>
  Activity.make(
    `get-amount-due-${orderId}`,
    Schema.Number,
    Schema.String
  )(
    Effect.gen(function* () {
      yield* Effect.log(`getTotalAmountActivity(${orderId})`)
      return 100
    })
  )

const chargeCreditCardActivity = (cardNumber: string, totalAmount: number) =>
  Activity.make(
    `charge-credit-card-${cardNumber}`,
    Schema.Void,
    Schema.String
  )(
    Effect.gen(function* () {
      yield* Effect.log(
        `chargeCreditCardActivity(${cardNumber}, ${totalAmount})`
      )
    })
  )

const createShippingTrackingCodeActivity = (deliveryAddress: string) =>
  Activity.make(
    `create-shipping-tracking-code-${deliveryAddress}`,
    Schema.Number,
    Schema.String
  )(
    Effect.gen(function* () {
      yield* Effect.log(
        `createShippingTrackingCodeActivity(${deliveryAddress})`
      )
      return 1
    })
  )

// ---------------------------------------------
// workflow
// ---------------------------------------------

const processPaymentWorkflow = Workflow.make(ProcessPaymentMessage, (message) =>
  Effect.gen(function* () {
    const totalAmount = yield* getTotalAmountActivity(message.orderId)
    yield* chargeCreditCardActivity(message.cardNumber, totalAmount)
    const trackingCode = yield* createShippingTrackingCodeActivity(
      message.deliveryAddress
    )
    return trackingCode
  })
)

// ---------------------------------------------
// running
// ---------------------------------------------

const program = Effect.gen(function* () {
  const engine = yield* WorkflowEngine.makeScoped(processPaymentWorkflow)
  const trackingCode = yield* engine.send(
    new ProcessPaymentMessage({
      orderId: "order-1",
      cardNumber: "my-card",
      deliveryAddress: "My address",
      email: "my@email.com"
    })
  )
  return trackingCode
})

Effect.runPromise(
  program.pipe(
    Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory),
    Effect.scoped
  )
).then((trackingCode) => console.log(`tracking code: ${trackingCode}`))
