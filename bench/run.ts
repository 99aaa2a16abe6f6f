/**
 * `npm run bench`: every benchmark in one run, each measuring its own baseline in the same
 * process run; all figures go to bench/results.json. `npm run bench -- core` runs one section.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

type Bench = () => Promise<Record<string, unknown>>;
const sections: [name: string, file: string, exportName: string][] = [
  ["core", "./core.ts", "benchCore"],
  ["calls", "./calls.ts", "benchCalls"],
  ["service", "./service.ts", "benchService"],
  ["executor", "./executor.ts", "benchExecutor"],
  ["inference", "./inference.ts", "benchInference"],
  ["chunks", "./chunks.ts", "benchChunks"],
  ["faults", "./faults.ts", "benchFaults"],
];

const only = process.argv.slice(2);
const out = fileURLToPath(new URL("./results.json", import.meta.url));
// Running one section keeps the other sections' last figures.
const previous = only.length && existsSync(out) ? (JSON.parse(readFileSync(out, "utf8")) as Record<string, unknown>) : {};
const results: Record<string, unknown> = {
  ...previous,
  machine: { node: process.version, cpus: (await import("node:os")).cpus().length, date: new Date().toISOString() },
};
let failed = false;
for (const [name, file, exportName] of sections) {
  if (only.length && !only.includes(name)) continue;
  if (!existsSync(fileURLToPath(new URL(file, import.meta.url)))) continue;
  const mod = (await import(file)) as Record<string, Bench>;
  try {
    results[name] = await mod[exportName]!();
  } catch (err) {
    failed = true;
    console.error(`bench ${name} failed:`, err);
    results[name] = { error: String((err as Error)?.stack ?? err) };
  }
}
writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
console.log(`\nfigures written to ${out}`);
process.exit(failed ? 1 : 0);
