import { realpathSync, statSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidOptionsError, ModuleNotAllowedError } from "../errors/index.ts";
import type { ProcSpec } from "./protocol.ts";

/**
 * Whoever can publish to an agent's subject can ask it to start a process, so the agent only
 * imports modules that live under directories its operator chose. Paths are compared after
 * resolving symlinks: a link inside a root that points elsewhere does not widen the root.
 */
export function resolveAllowedRoots(paths: string[] | undefined, cwd = process.cwd()): string[] {
  const given = paths === undefined || paths.length === 0 ? [cwd] : paths;
  return given.map((p) => {
    if (typeof p !== "string" || p.length === 0) {
      throw new InvalidOptionsError(`agent allow roots must be directory paths such as "/srv/app" (got ${JSON.stringify(p)})`);
    }
    const abs = resolve(cwd, p);
    let real: string;
    try {
      real = realpathSync(abs);
    } catch {
      throw new InvalidOptionsError(`agent allow root ${abs} does not exist: create it or pass an existing directory to --allow`, { details: { root: abs } });
    }
    if (!statSync(real).isDirectory()) {
      throw new InvalidOptionsError(`agent allow root ${abs} is not a directory: --allow takes the directories whose modules replicas may load`, { details: { root: abs } });
    }
    return real;
  });
}

// Variables that make node, the dynamic linker or python load code other than the module checked.
const CODE_LOADING_ENV = /^(NODE_OPTIONS|NODE_PATH|NODE_REPL_EXTERNAL_MODULE|LD_.*|DYLD_.*|PYTHONPATH|PYTHONSTARTUP|PYTHONHOME|PYTHONUSERBASE|TSX_.*)$/i;

const within = (root: string, file: string): boolean => {
  const rel = relative(root, file);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
};

/** Throws ModuleNotAllowedError unless the spec's module is a file under one of `roots` and its env loads no other code. */
export function checkSpawnAllowed(spec: ProcSpec, roots: string[], hostId: string): void {
  const url = typeof spec?.moduleUrl === "string" ? spec.moduleUrl : String(spec?.moduleUrl);
  const refuse = (why: string, extra: Record<string, unknown> = {}): never => {
    throw new ModuleNotAllowedError(`agent ${hostId} refuses to start ${url}: ${why}`, { details: { hostId, moduleUrl: url, roots, ...extra } });
  };
  if (!url.startsWith("file:")) refuse("only file: modules can be spawned (data:, http: and bare package names could run any code)");
  let file: string;
  try {
    file = realpathSync(fileURLToPath(url));
  } catch {
    return refuse("the module does not exist on this host; deploy the code here or place the service on a host that has it");
  }
  if (!roots.some((r) => within(r, file))) {
    refuse(`${file} is outside this agent's allowed roots (${roots.join(", ")}); start the agent with --allow <dir> for the directory that holds it`, { file });
  }
  const env = spec.env && typeof spec.env === "object" ? spec.env : {};
  const bad = Object.keys(env).filter((k) => CODE_LOADING_ENV.test(k));
  if (bad.length) refuse(`its environment sets ${bad.join(", ")}, which would load code from elsewhere; set them on the agent's host instead`, { env: bad });
}
