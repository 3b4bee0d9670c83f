#!/usr/bin/env node
// The package's `bin`: a committed file (so package managers can link it before a build), running the
// compiled command line of src/node/bin.ts. The packages it needs are not dependencies of the package
// (an in-memory user installs none of them): when one is missing, say which to install.
const needed = ["@effect/platform-node", "@effect/rpc", "@effect/cli", "@effect/printer", "@effect/printer-ansi"]
try {
  await import("../dist/esm/node/bin.js")
} catch (error) {
  const missing = error?.code === "ERR_MODULE_NOT_FOUND" &&
    needed.find((name) => String(error.message).includes(`'${name}'`) || String(error.message).includes(`'${name}/`))
  if (!missing) throw error
  console.error(
    `effect-cluster needs the package ${missing}, which is not installed. Install the command line's packages:\n` +
      "  npm i @effect/platform-node@0.108 @effect/rpc@0.76 @effect/cli@0.77\n" +
      "(and a driver for a database: npm i @effect/sql-libsql@0.42 or npm i @effect/sql-pg@0.53)"
  )
  process.exit(1)
}
