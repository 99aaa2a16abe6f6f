import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/**
 * How replica processes are started: the same `node` as this process, with the loader flags it
 * runs under, so a replica imports the user's module the way the user's own process did. A
 * built app runs on plain node and its replicas do too; an app under tsx (`tsx app.ts`,
 * `node --import tsx`) or Node's type stripping gets replicas that load its `.ts` modules.
 * NODE_OPTIONS reaches replicas through the environment anyway.
 */

// Built JavaScript starts built JavaScript; sources (development in this repo, under tsx) start
// sources. The extension of this very module tells which one runs.
const OWN_EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

export function siblingPath(relative: string, base: string): string {
  return fileURLToPath(new URL(`${relative}${OWN_EXT}`, base));
}

// Flags of this process that make no sense twice: code to evaluate, debugger ports, watch mode,
// the test runner. Everything else (loaders, --conditions, memory limits, type stripping) is
// what fork() would pass on too.
const DROP_WITH_VALUE = new Set(["-e", "--eval", "-p", "--print", "--input-type", "--inspect-port", "--debug-port", "--watch-path", "--test-reporter", "--test-reporter-destination", "--test-name-pattern", "--test-skip-pattern", "--test-concurrency", "--test-timeout", "--test-shard", "--test-isolation", "--test-coverage-include", "--test-coverage-exclude", "--run"]);
const DROP_PREFIXES = ["--inspect", "--debug", "--watch", "--test", "--cpu-prof", "--heap-prof", "--prof", "--interactive", "-i", "--check", "-c", "--experimental-test"];

export function inheritedNodeArgs(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    const flag = arg.includes("=") ? arg.slice(0, arg.indexOf("=")) : arg;
    if (DROP_WITH_VALUE.has(flag)) {
      if (!arg.includes("=")) i++;
      continue;
    }
    if (DROP_PREFIXES.some((p) => flag === p || (p.startsWith("--") && flag.startsWith(`${p}-`)))) continue;
    out.push(arg);
  }
  return out;
}

let tsxLoader: string | undefined;
/**
 * Node arguments for a replica: this process's loaders; from sources, tsx as well when this
 * process got it some other way than its own flags (mocha's require, tsx's register API).
 */
export function replicaNodeArgs(execArgv: readonly string[] = process.execArgv): string[] {
  const args = inheritedNodeArgs(execArgv);
  if (OWN_EXT === ".ts" && !args.some((a) => a.includes("tsx"))) {
    // Resolved here, not left to `--import tsx`, which resolves from the replica's cwd.
    tsxLoader ??= createRequire(import.meta.url).resolve("tsx");
    args.push("--import", tsxLoader);
  }
  return args;
}
