import { resolveExecutorOptions, type ExecuteOptions, type PythonExecutorOptions } from "./options.ts";
import { createExecutorPool, type ExecutorPool, type ExecutorStats } from "./pool.ts";
import type { ExecutionResult } from "./result.ts";
import { tracerSource, withSpan } from "../tracing/index.ts";

/**
 * TorchRL's PythonExecutorService: a fixed pool of sandboxed, persistent Python interpreters
 * shared by many environments. Register it in a namespace and every worker can use it:
 *
 *   await services.registerWithOptions("python_executor", PythonExecutorService,
 *     { maxConcurrency: 256 }, { poolSize: 32, timeoutMs: 10_000 });
 *
 * (the pool queues by itself, knowing which interpreter holds each session, so let the actor
 * admit more calls than there are interpreters),
 * or use it directly, without any registry. Calls with the same `sessionId` share variables;
 * different sessions never see each other's. Interpreters start in the background; the first
 * calls wait for them (`ready()` waits explicitly).
 */
export class PythonExecutorService {
  readonly #pool: ExecutorPool;
  readonly #tracer = tracerSource();

  constructor(options: PythonExecutorOptions = {}) {
    this.#pool = createExecutorPool(resolveExecutorOptions(options));
  }

  /** Runs `code`; resolves with its result even when the code fails, times out or crashes. */
  execute(code: string, options?: ExecuteOptions): Promise<ExecutionResult> {
    // An INTERNAL span (under the call's SERVER span) says which interpreter ran it and how.
    return withSpan(this.#tracer(), "python.execute", undefined, () => this.#pool.execute(code, options), describeRun);
  }

  /** Forgets a session's variables; resolves true if it had any. */
  async reset(sessionId: string): Promise<boolean> {
    return this.#pool.reset(sessionId);
  }

  /** Pool size and health, queue, sessions, counters, per-interpreter RSS, and the sandbox in force. */
  stats(): ExecutorStats {
    return this.#pool.stats();
  }

  /** Waits until every interpreter has started; InterpreterStartError if they cannot. */
  async ready(): Promise<ExecutorStats> {
    await this.#pool.ready();
    return this.#pool.stats();
  }

  /** Kills every interpreter and removes their directories; waiting calls get ClosedError. Idempotent. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#pool.close();
  }
}

const describeRun = (r: ExecutionResult) => ({
  "actorbus.executor.interpreter": r.interpreter,
  "actorbus.executor.returncode": r.returncode,
  "actorbus.executor.success": r.success,
  "actorbus.executor.timed_out": r.timedOut,
  "actorbus.executor.queue_ms": r.queuedMs,
  "actorbus.executor.duration_ms": r.durationMs,
});
