import { randomUUID } from "node:crypto";
import type { ServiceHandle } from "../actor/index.ts";
import { ActorBusError, ClosedError, InvalidOptionsError, ServiceNotFoundError } from "../errors/index.ts";
import { bool, defineOptions, durationMs, int, obj, oneOrMany, str, type Resolved, type SpecFor } from "../options/index.ts";
import { getServicesOptions } from "../registry/get-services.ts";
import { getServices, type GetServicesOptions, type Services } from "../registry/index.ts";
import { validateName } from "../subjects/index.ts";
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

type ConnectOptions = NonNullable<PythonInterpreterOptions["connect"]>;

const INTERPRETER_CHECKS = {
  services: (v: unknown) => {
    if (v === null || (INTERPRETER_BACKENDS as readonly unknown[]).includes(v)) return v as "nats" | "local" | null;
    throw new InvalidOptionsError(`invalid services backend ${JSON.stringify(v)}: use "nats" or "local" for a shared PythonExecutorService, or null for local processes`, {
      details: { option: "services", valid: [...INTERPRETER_BACKENDS, null] },
    });
  },
  namespace: (v: unknown) => validateName("namespace", v),
  serviceName: (v: unknown) => validateName("service", v),
  servers: oneOrMany(str({ expected: "a URL such as nats://127.0.0.1:4222 (or a list of them)" })),
  connect: (v: unknown, key: string, where: string): ConnectOptions => {
    const o = obj<Record<string, unknown>>("connection settings such as { credsFile }")(v, key, where);
    for (const [k, instead] of [["backend", "services"], ["namespace", "namespace"], ["servers", "servers"]] as const) {
      if (o[k] !== undefined) throw new InvalidOptionsError(`${where}: ${key}.${k} is the interpreter's to set; use its ${instead} option instead`, { details: { option: key } });
    }
    // Checked now, not at the first run: the connection is made in the background.
    getServicesOptions.check(o, `${where}: ${key}`);
    return o as ConnectOptions;
  },
  registry: obj<Services>("pass the result of getServices()", ["get", "close"]),
  persistent: bool(),
  timeoutMs: durationMs({ min: 1, hint: "the execution time limit per block" }),
  callTimeoutMs: durationMs({ min: 1, hint: "the deadline of each call to the shared service, queueing included" }),
  executor: obj<NonNullable<PythonInterpreterOptions["executor"]>>("interpreter settings such as { python: \"python3\" }"),
  maxProcesses: int({ min: 1, hint: "local persistent processes kept" }),
} satisfies SpecFor<PythonInterpreterOptions>;

const INTERPRETER_DEFAULTS = { services: null, serviceName: "python_executor", persistent: false, callTimeoutMs: 120_000, maxProcesses: 16 } as const;

/** Options of run() and execute(). */
const runOptions = defineOptions("PythonInterpreter run options", { sessionId: str({ nonEmpty: true, maxLength: 256 }) }, {}, { example: '{ sessionId: "env-1" }' });

const interpreterOptions = defineOptions("PythonInterpreter options", INTERPRETER_CHECKS, () => ({ ...INTERPRETER_DEFAULTS }), {
  example: "{ services: null, persistent: true }",
});

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
  readonly #options: Resolved<typeof INTERPRETER_CHECKS, typeof INTERPRETER_DEFAULTS>;
  readonly #defaultSession = `interp-${randomUUID()}`;
  #handle: Promise<ServiceHandle<PythonExecutorService>> | undefined;
  #registry: Promise<{ registry: Services; owned: boolean }> | undefined;
  #runner: BlockRunner | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(given: PythonInterpreterOptions = {}) {
    const options = interpreterOptions.parse(given);
    const services = options.services;
    this.services = services;
    this.namespace = options.namespace ?? options.registry?.namespace ?? "default";
    this.serviceName = options.serviceName;
    this.persistent = options.persistent;
    this.#options = options;
    if (services === null) {
      const executor = resolveExecutorOptions({ ...(options.executor ?? {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) });
      this.#runner = this.persistent ? createPersistentRunner(executor, options.maxProcesses) : createTemporaryRunner(executor);
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
      return await registry.get<PythonExecutorService>(this.serviceName, { timeoutMs: o.callTimeoutMs });
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

  /**
   * TorchRL's PythonInterpreter.clone(): a new tool with the same service, namespace and
   * options, but its own state: its own local processes or registry connection (a `registry`
   * option is shared, as it is not the tool's to close) and its own persistent session.
   * Closing either leaves the other working.
   */
  clone(): this {
    const Cls = this.constructor as new (options: PythonInterpreterOptions) => this;
    return new Cls({ ...this.#options });
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
    const { sessionId } = runOptions.parse(options);
    const blocks = extractPythonBlocks(reply);
    const messages: string[] = [];
    const results: ExecutionResult[] = [];
    for (const [i, code] of blocks.entries()) {
      const r = await this.#execute(code, sessionId);
      results.push(r);
      messages.push(formatBlockMessage(i, r));
    }
    return { messages, results };
  }

  /** Runs one piece of code (no block extraction). */
  async execute(code: string, options: { sessionId?: string } = {}): Promise<ExecutionResult> {
    if (this.#closed) throw new ClosedError("the PythonInterpreter is closed");
    return this.#execute(code, runOptions.parse(options).sessionId);
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
