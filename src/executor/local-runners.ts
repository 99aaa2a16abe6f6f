import { ClosedError } from "../errors/index.ts";
import type { ResolvedExecutorOptions } from "./options.ts";
import { createExecutorPool, type ExecutorPool } from "./pool.ts";
import type { ExecutionResult } from "./result.ts";
import { planSandbox } from "./sandbox.ts";

/** How PythonInterpreter runs a block when it does not use a shared service. */
export interface BlockRunner {
  execute(code: string, sessionId: string | undefined, timeoutMs: number | undefined): Promise<ExecutionResult>;
  reset(sessionId: string): Promise<boolean>;
  /** Interpreter processes currently alive (for tests and stats). */
  processes(): number;
  close(): Promise<void>;
}

/**
 * Local persistent mode: one interpreter process per session (strict isolation between
 * environments, like TorchRL's one process per env), the least recently used closed beyond
 * `maxProcesses`.
 */
export function createPersistentRunner(opts: ResolvedExecutorOptions, maxProcesses: number): BlockRunner {
  const one = { ...opts, poolSize: 1, maxSessionsPerInterpreter: 1 };
  const plan = planSandbox(one); // probed once for all the sessions' processes
  const pools = new Map<string, ExecutorPool>(); // least recently used first
  const closing = new Set<Promise<void>>();
  const evicted = new Set<string>(); // sessions whose process was closed to make room
  let closed = false;

  const drop = (id: string) => {
    const p = pools.get(id);
    if (!p) return false;
    pools.delete(id);
    const c = p.close();
    closing.add(c);
    void c.finally(() => closing.delete(c));
    return true;
  };

  return {
    async execute(code, sessionId = "default", timeoutMs) {
      if (closed) throw new ClosedError("the PythonInterpreter is closed");
      let pool = pools.get(sessionId);
      if (pool) pools.delete(sessionId);
      else {
        pool = createExecutorPool(one, { plan });
        while (pools.size >= maxProcesses) {
          const oldest = pools.keys().next().value!;
          drop(oldest);
          evicted.add(oldest);
          if (evicted.size > 10_000) evicted.delete(evicted.values().next().value!);
        }
      }
      pools.set(sessionId, pool);
      const r = await pool.execute(code, { sessionId, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
      if (evicted.delete(sessionId) && !r.stateReset) {
        return { ...r, stateReset: true, resetReason: `its process was closed to keep at most ${maxProcesses} local processes (maxProcesses)` };
      }
      return r;
    },
    async reset(sessionId) {
      evicted.delete(sessionId);
      return drop(sessionId);
    },
    processes: () => pools.size,
    async close() {
      closed = true;
      for (const id of [...pools.keys()]) drop(id);
      while (closing.size) await Promise.all([...closing]);
    },
  };
}

/** Temporary mode: a fresh sandboxed process per block, gone afterwards; no state between blocks. */
export function createTemporaryRunner(opts: ResolvedExecutorOptions): BlockRunner {
  const one = { ...opts, poolSize: 1 };
  const plan = planSandbox(one);
  const live = new Set<ExecutorPool>();
  let closed = false;
  return {
    async execute(code, _sessionId, timeoutMs) {
      if (closed) throw new ClosedError("the PythonInterpreter is closed");
      const pool = createExecutorPool(one, { plan });
      live.add(pool);
      try {
        return await pool.execute(code, timeoutMs === undefined ? {} : { timeoutMs });
      } finally {
        live.delete(pool);
        await pool.close();
      }
    },
    async reset() {
      return false;
    },
    processes: () => live.size,
    async close() {
      closed = true;
      await Promise.all([...live].map((p) => p.close()));
    },
  };
}
