#!/usr/bin/env node
// The package's `bin`: a committed file (so package managers can link it before a build), running the
// compiled command line of src/node/bin.ts.
import "../dist/esm/node/bin.js"
