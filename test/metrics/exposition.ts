import { spawnSync } from "node:child_process";

/** One sample line of a Prometheus text exposition. */
export interface Line {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseExposition(text: string): Line[] {
  const out: Line[] = [];
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(raw);
    if (!m) throw new Error(`not an exposition line: ${raw}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels` (undefined if none). */
export function valueOf(text: string, name: string, labels: Record<string, string>): number | undefined {
  const hits = parseExposition(text).filter((l) => l.name === name && Object.entries(labels).every(([k, v]) => l.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}

export const PROMTOOL = "/usr/bin/promtool";
export const PROMETHEUS = "/usr/bin/prometheus";

/** `promtool check metrics` on an exposition: its exit status and what it said. */
export function promtoolCheck(text: string): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
