import { defineConfig } from "tsup"

export default defineConfig({
  // The root entry stays browser-safe; Node-only drivers are subpath exports (package.json "exports").
  entry: { index: "src/index.ts", "node/Sqlite": "src/node/Sqlite.ts" },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "es2022",
  treeshake: false,
  tsconfig: "tsconfig.build.json"
})
