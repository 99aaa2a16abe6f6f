import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const WORKER = fileURLToPath(new URL("../fixtures/worker.ts", import.meta.url));

export interface Worker {
  child: ChildProcess;
  /** Next JSON line the worker prints. */
  next<T = any>(timeoutMs?: number): Promise<T>;
  /** Closes stdin (graceful) and waits for exit; SIGKILL after a grace period. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

const live = new Set<ChildProcess>();

export function startWorker(mode: string, args: Record<string, unknown>, script = WORKER): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", script, mode, JSON.stringify(args)], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env },
  });
  live.add(child);
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => (live.delete(child), r(code))));
  return {
    child,
    exited,
    next<T>(timeoutMs = 20_000) {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(JSON.parse(l) as T);
      return new Promise<T>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`worker ${mode} printed nothing within ${timeoutMs} ms`)), timeoutMs);
        const onExit = (code: number | null) => reject(new Error(`worker ${mode} exited with ${code} before printing`));
        child.once("exit", onExit);
        waiters.push((line) => {
          clearTimeout(t);
          child.off("exit", onExit);
          resolve(JSON.parse(line) as T);
        });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin!.end();
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Kills every worker still running (after hooks call it so nothing outlives a test). */
export async function killAllWorkers(): Promise<void> {
  await Promise.all(
    [...live].map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          c.once("exit", () => r());
          c.kill("SIGKILL");
        }),
    ),
  );
}

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
