import { readFileSync } from "node:fs";
import { processesOfUid } from "../../src/executor/sandbox.ts";
import { PythonExecutorService } from "../../src/executor/index.ts";
import type { PythonExecutorOptions } from "../../src/executor/index.ts";

/** Every service a test made, closed by `closeAll()` in an after hook so no interpreter outlives its test. */
const live = new Set<PythonExecutorService>();

export function makeService(opts: PythonExecutorOptions = {}): PythonExecutorService {
  const s = new PythonExecutorService({ poolSize: 2, timeoutMs: 5_000, ...opts });
  live.add(s);
  return s;
}

export async function closeAll(): Promise<void> {
  await Promise.all([...live].map((s) => s.close()));
  live.clear();
}

/** Live (non-zombie) processes of the given uids. */
export function liveOfUids(uids: (number | null)[]): number[] {
  return uids.flatMap((u) => (u === null ? [] : processesOfUid(u)));
}

export function uidsOf(s: PythonExecutorService): (number | null)[] {
  return s.stats().interpreters.map((i) => i.uid);
}

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed child of a subreaper may linger as a zombie until reaped: that is not running.
  try {
    return !/\nState:\s+Z/.test(readFileSync(`/proc/${pid}/status`, "latin1"));
  } catch {
    return false;
  }
}
