#!/usr/bin/env node
// The package's command. It runs the build (dist/) on plain node: `npm pack` and `npm install`
// of the repository build it first (the `prepare` script).
import "../dist/cli/run.js";
