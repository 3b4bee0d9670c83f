// Activities and retries (docs/activities.md). An email API that is busy twice, then accepts: the activity
// retries with a durable exponential backoff (50 ms, then 100 ms). Each attempt sees its attempt number and
// the same idempotency key; each decision and its delay are journaled. Sending the message again returns
// the recorded result without running anything.
// Run it with `pnpm exec tsx --conditions=source examples/retries.ts`.
import { Message } from "@effect-cluster/cluster"
import {
  Activity,
  DurableExecutionJournal,
  DurableExecutionJournalInMemory,
  Workflow,
  WorkflowEngine
} from "@effect-cluster/cluster-workflow"
import { Console, Effect, Schema } from "effect"

class SendInvoice extends Message.TaggedMessage<SendInvoice>()(
  "SendInvoice",
  Schema.String, // failure
  Schema.String, // success: the mail provider's message id
  { invoiceId: Schema.String, email: Schema.String },
  (_) => _.invoiceId
) {}

const sendEmail = (email: string) =>
  Activity.make("send-email", Schema.String, Schema.String)(
    Effect.gen(function*() {
      const attempt = yield* Activity.currentAttempt
      // pass this key to the provider so that a body run twice (after a crash) sends one email
      const key = yield* Activity.idempotencyKey
      yield* Console.log(`attempt ${attempt} (key ${key}): sending to ${email}`)
      if (attempt < 2) return yield* Effect.fail("mail server busy")
      return `msg-${attempt}`
    })
  ).pipe(Activity.retry({ times: 3, backoff: "50 millis" }))

const sendInvoice = Workflow.make(SendInvoice, (invoice) => sendEmail(invoice.email))

const main = Effect.gen(function*() {
  const engine = yield* WorkflowEngine.makeScoped(sendInvoice)
  const invoice = new SendInvoice({ invoiceId: "inv-1", email: "ada@example.com" })
  yield* Console.log(`result: ${yield* engine.send(invoice)}`)

  // what the journal holds: every attempt, every retry decision (with its delay), the result
  const journal = yield* DurableExecutionJournal.DurableExecutionJournal
  const events = yield* journal.events({ workflow: "SendInvoice", executionId: "inv-1" }, 0)
  for (const event of events) {
    const body = JSON.parse(event.body)
    const delay = event.kind === "StepRetrying" ? ` retry in ${body.wakeAt - body.at} ms` : ""
    yield* Console.log(`journal: ${event.kind} ${event.stepId || "(workflow)"} attempt ${event.attempt}${delay}`)
  }

  // the result is recorded: sending again runs nothing
  yield* Console.log(`sent again: ${yield* engine.send(invoice)}`)
}).pipe(Effect.provide(DurableExecutionJournalInMemory.activityJournalInMemory), Effect.scoped)

Effect.runPromise(main)
