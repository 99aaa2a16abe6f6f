import { realpathSync } from "node:fs";
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

/** The file: URL of the program's entry module (`node app.js` → app.js), if it can be told. */
export function entryModuleUrl(argv1: string | undefined = process.argv[1]): string | undefined {
  if (!argv1) return undefined;
  // `node app` runs app.js: try the name as given, then with the extensions node would add.
  for (const file of [argv1, `${argv1}.js`, `${argv1}.mjs`, `${argv1}.cjs`, `${argv1}.ts`, `${argv1}.mts`]) {
    try {
      return pathToFileURL(realpathSync(file)).href;
    } catch {
      // not this one
    }
  }
  return undefined;
}

function sameFile(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return realpathSync(fileURLToPath(a)) === realpathSync(fileURLToPath(b));
  } catch {
    return false;
  }
}

const entryModuleError = (cls: Function, url: string) =>
  new InvalidOptionsError(
    `class ${cls.name || "(anonymous)"} is launched from the program's entry module ${url} and found in no other module. Replicas run in other ` +
      `processes and import the class's module; importing the entry module would run its launch code again in every replica. Move the class ` +
      `to a module of its own (e.g. ${cls.name ? cls.name.toLowerCase() : "worker"}.js), export it there and import it from the entry module ` +
      `(a class imported from another module: declare \`static module = import.meta.url\` in it)`,
    { details: { className: cls.name, moduleUrl: url, fix: "move the class to its own module" } },
  );

// Importing a module that is already loaded settles within a few event-loop turns; one that
// never settles is still evaluating: its top-level code is awaiting this very launch.
const IMPORT_SETTLE_MS = 3_000;

async function importLoaded(cls: Function, url: string): Promise<Record<string, unknown>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new InvalidOptionsError(
            `the module of class ${cls.name || "(anonymous)"} (${url}) is still being evaluated: its top-level code awaits this launch, and replicas ` +
              `import that module. Move the class to a module of its own, or launch it from a function called after the module has loaded`,
            { details: { className: cls.name, moduleUrl: url, fix: "move the class to its own module" } },
          ),
        ),
      IMPORT_SETTLE_MS,
    );
  });
  try {
    return (await Promise.race([import(url), stuck])) as Record<string, unknown>;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Finds the export of `cls` in the candidate modules (already loaded here, so importing them
 * again runs nothing). Replicas import the same URL, so the class must be exported from it.
 */
export async function resolveModuleRef(cls: Function, candidates: (string | undefined)[]): Promise<ModuleRef> {
  const tried: string[] = [];
  const entry = entryModuleUrl();
  let skippedEntry: string | undefined;
  for (const url of new Set(candidates.filter((c): c is string => typeof c === "string" && c.length > 0))) {
    tried.push(url);
    // Checked before importing: importing the entry while its top-level await is pending
    // deadlocks (node exits with code 13 and prints nothing).
    if (entry && sameFile(url, entry)) {
      skippedEntry = url;
      continue;
    }
    let mod: Record<string, unknown>;
    // A module loaded as CommonJS (tsx under mocha's require) is looked up where it lives:
    // import() would evaluate a second copy of it, with a different class object.
    const cjs = url.startsWith("file:") ? cjsCache[fileURLToPath(url)] : undefined;
    if (cjs) mod = cjs.exports as Record<string, unknown>;
    else {
      try {
        mod = await importLoaded(cls, url);
      } catch (err) {
        if (err instanceof InvalidOptionsError) throw err;
        continue;
      }
    }
    if (mod[cls.name] === cls) return { moduleUrl: url, exportName: cls.name };
    const found = Object.entries(mod).find(([, v]) => v === cls);
    if (found) return { moduleUrl: url, exportName: found[0] };
  }
  if (skippedEntry) throw entryModuleError(cls, skippedEntry);
  throw new InvalidOptionsError(
    `class ${cls.name || "(anonymous)"} must be exported from its module: replicas run in other processes and import it by module URL` +
      (tried.length ? ` (looked in ${tried.join(", ")})` : "") +
      `. Export the class and declare \`static module = import.meta.url\` in it, or launch it from the module that defines it`,
    { details: { className: cls.name, tried } },
  );
}
