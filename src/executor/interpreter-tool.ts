import { randomUUID } from "node:crypto";
import { checkInt, type ServiceHandle } from "../actor/index.ts";
import { ActorBusError, ClosedError, InvalidOptionsError, ServiceNotFoundError } from "../errors/index.ts";
import { getServices, type GetServicesOptions, type Services } from "../registry/index.ts";
import { extractPythonBlocks, formatBlockMessage } from "./code-blocks.ts";
import { createPersistentRunner, createTemporaryRunner, type BlockRunner } from "./local-runners.ts";
import { resolveExecutorOptions, type PythonExecutorOptions } from "./options.ts";
import type { ExecutionResult } from "./result.ts";
import type { PythonExecutorService } from "./service.ts";

export const INTERPRETER_BACKENDS = ["nats", "local"] as const;

export interface PythonInterpreterOptions {
  /**
   * "nats" or "local": use the PythonExecutorService registered as `serviceName` in `namespace`
   * (shared pool). null (default): run locally, in processes of this interpreter's own.
   */
  services?: "nats" | "local" | null;
  /** Registry namespace of the shared service. Default "default". */
  namespace?: string;
  /** Name of the shared service. Default "python_executor". */
  serviceName?: string;
  /** NATS servers (services "nats"); default NATS_URL, then nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** Further connection settings (auth, TLS) for services "nats". */
  connect?: Omit<GetServicesOptions, "backend" | "namespace" | "servers">;
  /** An open registry to use instead of connecting (it is left open by close()). */
  registry?: Services;
  /**
   * Keep state between runs. Local: one persistent process per session (else a fresh process
   * per block). Shared: runs without a sessionId use this interpreter's own session (else they
   * are stateless). Default false.
   */
  persistent?: boolean;
  /** Execution time limit per block; default: the executor's (10 s). */
  timeoutMs?: number;
  /** Deadline of each call to the shared service, queueing included. Default 120 000. */
  callTimeoutMs?: number;
  /** Local modes: interpreter settings (python, sandbox, maxOutputBytes, ...). */
  executor?: Omit<PythonExecutorOptions, "poolSize">;
  /** Local persistent mode: sessions holding a process; the least recently used is closed beyond. Default 16. */
  maxProcesses?: number;
}

export interface RunResult {
  /** One tool message per python block, in order; empty when the reply has no block. */
  messages: string[];
  results: ExecutionResult[];
}

const KNOWN = new Set(["services", "namespace", "serviceName", "servers", "connect", "registry", "persistent", "timeoutMs", "callTimeoutMs", "executor", "maxProcesses"]);

/**
 * TorchRL's PythonInterpreter tool: runs the fenced python blocks of an LLM reply, in order, and
 * turns each result into a tool message ("Code block 1 executed successfully:\n..." or
 * "Code block 1 failed:\n<stderr>"). Three modes: a shared PythonExecutorService through the
 * registry, local persistent processes, or a temporary process per block.
 */
export class PythonInterpreter implements AsyncDisposable {
  readonly services: "nats" | "local" | null;
  readonly namespace: string;
  readonly serviceName: string;
  readonly persistent: boolean;
  readonly #options: PythonInterpreterOptions;
  readonly #defaultSession = `interp-${randomUUID()}`;
  #handle: Promise<ServiceHandle<PythonExecutorService>> | undefined;
  #registry: Promise<{ registry: Services; owned: boolean }> | undefined;
  #runner: BlockRunner | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: PythonInterpreterOptions = {}) {
    if (typeof options !== "object" || options === null) throw new InvalidOptionsError("PythonInterpreter options must be an object such as { services: null, persistent: true }");
    for (const k of Object.keys(options)) {
      if (!KNOWN.has(k)) throw new InvalidOptionsError(`PythonInterpreter: unknown option "${k}"; valid options are ${[...KNOWN].join(", ")}`, { details: { option: k } });
    }
    const services = options.services ?? null;
    if (services !== null && !(INTERPRETER_BACKENDS as readonly string[]).includes(services)) {
      throw new InvalidOptionsError(`invalid services backend ${JSON.stringify(services)}: use "nats" or "local" for a shared PythonExecutorService, or null for local processes`, {
        details: { option: "services", valid: [...INTERPRETER_BACKENDS, null] },
      });
    }
    if (options.persistent !== undefined && typeof options.persistent !== "boolean") throw new InvalidOptionsError("PythonInterpreter: persistent must be true or false");
    if (options.timeoutMs !== undefined) checkInt("PythonInterpreter", "timeoutMs", options.timeoutMs, 1, "milliseconds per block");
    if (options.callTimeoutMs !== undefined) checkInt("PythonInterpreter", "callTimeoutMs", options.callTimeoutMs, 1, "milliseconds per call to the service");
    if (options.maxProcesses !== undefined) checkInt("PythonInterpreter", "maxProcesses", options.maxProcesses, 1, "local persistent processes kept");
    this.services = services;
    this.namespace = options.namespace ?? options.registry?.namespace ?? "default";
    this.serviceName = options.serviceName ?? "python_executor";
    this.persistent = options.persistent ?? false;
    this.#options = options;
    if (services === null) {
      const executor = resolveExecutorOptions({ ...(options.executor ?? {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) });
      this.#runner = this.persistent ? createPersistentRunner(executor, options.maxProcesses ?? 16) : createTemporaryRunner(executor);
    } else {
      // Connect now so the first run does not pay for it; failures surface on ready()/run().
      this.#handle = this.#lookup();
      this.#handle.catch(() => {});
    }
  }

  /** "service" (shared pool), "persistent" (own processes) or "temporary" (a process per block). */
  get mode(): "service" | "persistent" | "temporary" {
    return this.services !== null ? "service" : this.persistent ? "persistent" : "temporary";
  }

  /** Local processes alive (0 in service mode). */
  get processes(): number {
    return this.#runner?.processes() ?? 0;
  }

  async #lookup(): Promise<ServiceHandle<PythonExecutorService>> {
    const o = this.#options;
    this.#registry = o.registry
      ? Promise.resolve({ registry: o.registry, owned: false })
      : getServices({ ...(o.connect ?? {}), backend: this.services!, namespace: this.namespace, ...(o.servers !== undefined ? { servers: o.servers } : {}) }).then((registry) => ({ registry, owned: true }));
    const { registry } = await this.#registry;
    try {
      return await registry.get<PythonExecutorService>(this.serviceName, { timeoutMs: o.callTimeoutMs ?? 120_000 });
    } catch (err) {
      if (err instanceof ServiceNotFoundError) {
        throw new ServiceNotFoundError(
          `python executor service "${this.serviceName}" is not registered in namespace "${this.namespace}" (${this.services} backend); ` +
            `register PythonExecutorService under that name first, or use services: null for local processes`,
          { cause: err, details: { namespace: this.namespace, service: this.serviceName, backend: this.services } },
        );
      }
      throw err;
    }
  }

  /** Connects to the shared service (a no-op locally); rejects if it is not registered. */
  async ready(): Promise<void> {
    if (this.#handle) await this.#handle;
  }

  /**
   * Runs every python block of `reply` in order (a failing block does not stop the next) and
   * returns one tool message per block.
   */
  async run(reply: string, options: { sessionId?: string } = {}): Promise<RunResult> {
    if (this.#closed) throw new ClosedError("the PythonInterpreter is closed");
    if (typeof reply !== "string") throw new TypeError(`run(reply) needs the reply text (got ${typeof reply})`);
    const blocks = extractPythonBlocks(reply);
    const messages: string[] = [];
    const results: ExecutionResult[] = [];
    for (const [i, code] of blocks.entries()) {
      const r = await this.#execute(code, options.sessionId);
      results.push(r);
      messages.push(formatBlockMessage(i, r));
    }
    return { messages, results };
  }

  /** Runs one piece of code (no block extraction). */
  async execute(code: string, options: { sessionId?: string } = {}): Promise<ExecutionResult> {
    if (this.#closed) throw new ClosedError("the PythonInterpreter is closed");
    return this.#execute(code, options.sessionId);
  }

  async #execute(code: string, sessionId: string | undefined): Promise<ExecutionResult> {
    const timeoutMs = this.#options.timeoutMs;
    if (this.#runner) return this.#runner.execute(code, sessionId, timeoutMs);
    const handle = await this.#handle!;
    const sid = sessionId ?? (this.persistent ? this.#defaultSession : undefined);
    try {
      return await handle.execute(code, { ...(sid !== undefined ? { sessionId: sid } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    } catch (err) {
      // The block could not run (service overloaded, gone, deadline): the agent loop gets a
      // failed block it can show to the model, as TorchRL does, with the error's code.
      const e = err as ActorBusError;
      return {
        success: false,
        stdout: "",
        stderr: `executor service call failed: ${e.name ?? "Error"}${e.code ? ` [${e.code}]` : ""}: ${e.message}\n`,
        returncode: -1,
        timedOut: false,
        durationMs: 0,
        queuedMs: 0,
        truncated: false,
        stateReset: false,
        interpreter: -1,
      };
    }
  }

  /** Forgets a session's state (this interpreter's own session when none is given). */
  async reset(sessionId?: string): Promise<boolean> {
    if (this.#closed) throw new ClosedError("the PythonInterpreter is closed");
    if (this.#runner) return this.#runner.reset(sessionId ?? "default");
    const handle = await this.#handle!;
    return handle.reset(sessionId ?? this.#defaultSession);
  }

  /** Stops local processes and closes the registry connection it opened. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.#runner?.close();
      const reg = await this.#registry?.catch(() => undefined);
      if (reg?.owned) await reg.registry.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
