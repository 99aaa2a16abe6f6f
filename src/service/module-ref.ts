import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { InvalidOptionsError } from "../errors/index.ts";

/** How a replica process finds the class: the module's file: URL and the export's name. */
export interface ModuleRef {
  moduleUrl: string;
  exportName: string;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const cjsCache = createRequire(import.meta.url).cache;
const FRAME = /\(?((?:file:\/\/)?\/[^():]+?|[A-Za-z]:\\[^():]+?):\d+:\d+\)?\s*$/;

/**
 * The module that called into actorbus (the first stack frame outside src/service): where
 * options()/asService()/asActor() was called, which is the class's module when the class is
 * launched from the file that defines it.
 */
export function callerModuleUrl(): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n").slice(1)) {
    const m = FRAME.exec(line.trim());
    if (!m) continue;
    const file = m[1]!.startsWith("file://") ? fileURLToPath(m[1]!) : m[1]!;
    if (file.startsWith(HERE)) continue;
    return pathToFileURL(file).href;
  }
  return undefined;
}

/**
 * Finds the export of `cls` in the candidate modules (already loaded here, so importing them
 * again runs nothing). Replicas import the same URL, so the class must be exported from it.
 */
export async function resolveModuleRef(cls: Function, candidates: (string | undefined)[]): Promise<ModuleRef> {
  const tried: string[] = [];
  for (const url of new Set(candidates.filter((c): c is string => typeof c === "string" && c.length > 0))) {
    tried.push(url);
    let mod: Record<string, unknown>;
    // A module loaded as CommonJS (tsx under mocha's require) is looked up where it lives:
    // import() would evaluate a second copy of it, with a different class object.
    const cjs = url.startsWith("file:") ? cjsCache[fileURLToPath(url)] : undefined;
    if (cjs) mod = cjs.exports as Record<string, unknown>;
    else {
      try {
        mod = (await import(url)) as Record<string, unknown>;
      } catch {
        continue;
      }
    }
    if (mod[cls.name] === cls) return { moduleUrl: url, exportName: cls.name };
    const found = Object.entries(mod).find(([, v]) => v === cls);
    if (found) return { moduleUrl: url, exportName: found[0] };
  }
  throw new InvalidOptionsError(
    `class ${cls.name || "(anonymous)"} must be exported from its module: replicas run in other processes and import it by module URL` +
      (tried.length ? ` (looked in ${tried.join(", ")})` : "") +
      `. Export the class and declare \`static module = import.meta.url\` in it, or launch it from the module that defines it`,
    { details: { className: cls.name, tried } },
  );
}
