#!/usr/bin/env node
// Builds dist/ from src/: ESM JavaScript, declarations, declaration and source maps, plus the
// files read at run time. Development runs straight from src/ under tsx; only the package
// (npm pack, npm publish, npm install of the repo) runs this, through `prepare`.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
// Files that code loads by path next to its own module, not by import.
const RUNTIME_ASSETS = [
  "executor/runner.py",
  // The dashboard's page (src/dashboard/assets.ts lists them; test/dashboard checks both agree).
  "dashboard/assets/index.html",
  "dashboard/assets/dashboard.js",
  "dashboard/assets/dashboard.css",
  "dashboard/assets/favicon.svg",
];

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit", cwd: root });
} catch (err) {
  // tsc has printed the errors; a stack trace of this script would only bury them.
  console.error(`build failed: tsc exited with ${err.status ?? err.message}`);
  process.exit(1);
}

// tsc rewrites `./x.ts` to `./x.js` in emitted JavaScript but leaves declarations importing
// `./x.ts`, which consumers' compilers reject (TS5097) unless they opt into .ts imports.
const RELATIVE_TS = /((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']*?)\.ts(["'])/g;
function* files(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else yield p;
  }
}
for (const file of files(dist)) {
  if (!file.endsWith(".d.ts")) continue;
  const text = readFileSync(file, "utf8");
  const fixed = text.replace(RELATIVE_TS, "$1$2.js$3");
  if (fixed !== text) writeFileSync(file, fixed);
}
for (const asset of RUNTIME_ASSETS) {
  mkdirSync(dirname(join(dist, asset)), { recursive: true });
  copyFileSync(join(root, "src", asset), join(dist, asset));
}
