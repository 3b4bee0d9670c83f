/**
 * Starting the example's processes: TypeScript files of this repository under tsx, in the caller's scope
 * (closing it sends SIGTERM to the process group and waits for the exit), their output forwarded with a
 * name in front.
 */
import * as Command from "@effect/platform/Command"
import { Console, Deferred, Effect, Stream, String as Str } from "effect"
import * as Net from "node:net"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root. */
export const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")

/** A port nothing listens on now (the manager's: pods must know it before it starts). */
export const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Starts `file` (TypeScript, under tsx; `nodeArgs` go to node) in the scope; resolves once it printed a line matching `ready`. */
export const startProcess = (
  name: string,
  file: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  ready: RegExp,
  nodeArgs: ReadonlyArray<string> = []
) =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const process = yield* Command.make("node", ...nodeArgs, "--conditions=source", "--import", "tsx", join(root, file), ...args).pipe(
      Command.workingDirectory(root),
      Command.env(env),
      Command.start
    )
    const lines = (stream: Stream.Stream<Uint8Array, unknown>) =>
      stream.pipe(Stream.decodeText(), Stream.splitLines, Stream.filter(Str.isNonEmpty))
    yield* Effect.forkScoped(
      Stream.merge(lines(process.stdout), lines(process.stderr)).pipe(
        Stream.runForEach((line) =>
          Effect.zipRight(
            Console.log(`[${name}] ${line}`),
            ready.test(line) ? Deferred.succeed(started, undefined) : Effect.void
          )
        ),
        Effect.ignore
      )
    )
    yield* Deferred.await(started).pipe(
      Effect.raceFirst(Effect.flatMap(process.exitCode, (code) => Effect.dieMessage(`${name} exited (${code}) before it was ready`))),
      Effect.timeoutFail({ duration: "120 seconds", onTimeout: () => new Error(`${name} was not ready in 120 s`) })
    )
    return process
  })

