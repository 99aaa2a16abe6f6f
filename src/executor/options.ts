import { checkInt } from "../actor/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";

/**
 * The sandbox every interpreter runs in (on by default). Each limit is a backstop behind the
 * wall-clock timeout; what the machine cannot enforce is listed in `stats().sandbox.unavailable`.
 */
export interface SandboxOptions {
  /** false: plain child processes with the host's environment, no limits. Default true. */
  enabled?: boolean;
  /** RLIMIT_AS: address space per process; a memory bomb gets MemoryError. Default 1 GiB. */
  memoryBytes?: number;
  /** RLIMIT_FSIZE: largest file a process may write. Default 64 MiB. */
  fileSizeBytes?: number;
  /**
   * RLIMIT_NPROC for the interpreter's own uid (fork bombs stop there). Enforced only when each
   * interpreter runs under a dedicated uid (running as root with `setpriv`). Default 64.
   */
  maxProcesses?: number;
  /** RLIMIT_CPU seconds per call; default: the call's timeout rounded up, plus one. */
  cpuSeconds?: number;
  /** Allow network access. Default false: a private network namespace (`unshare -n`) when available. */
  network?: boolean;
  /** Run each interpreter under a fresh unprivileged uid when this process is root. Default true. */
  isolateUser?: boolean;
  /** Extra environment variables for user code (the host's environment is never passed). */
  env?: Record<string, string>;
}

export interface PythonExecutorOptions {
  /** Interpreter processes in the pool. Default 32 (TorchRL's pool_size). */
  poolSize?: number;
  /** Wall-clock limit of one execution; the interpreter is killed and replaced past it. Default 10 000. */
  timeoutMs?: number;
  /** Largest per-call `timeoutMs` a caller may ask for. Default 300 000. */
  maxTimeoutMs?: number;
  /** Executions that may wait for an interpreter; more get a retryable OverloadedError. Default 1024. */
  maxPending?: number;
  /** Longest wait for an interpreter before OverloadedError. Default 120 000. */
  maxQueueWaitMs?: number;
  /** Sessions kept per interpreter; the least recently used is evicted beyond. Default 64. */
  maxSessionsPerInterpreter?: number;
  /** Cap of stdout and of stderr per execution (the rest is dropped, `truncated` set). Default 256 KiB. */
  maxOutputBytes?: number;
  /** Python executable. Default "python3" (looked up on PATH). */
  python?: string;
  /** Deadline for an interpreter to start and say it is ready. Default 15 000. */
  startTimeoutMs?: number;
  /** Sandbox settings, or false to turn it off. */
  sandbox?: SandboxOptions | boolean;
}

export interface ResolvedSandbox {
  enabled: boolean;
  memoryBytes: number;
  fileSizeBytes: number;
  maxProcesses: number;
  cpuSeconds: number | null;
  network: boolean;
  isolateUser: boolean;
  env: Record<string, string>;
}

export interface ResolvedExecutorOptions {
  poolSize: number;
  timeoutMs: number;
  maxTimeoutMs: number;
  maxPending: number;
  maxQueueWaitMs: number;
  maxSessionsPerInterpreter: number;
  maxOutputBytes: number;
  python: string;
  /** True when the caller chose the executable; the sandbox then never substitutes another. */
  pythonExplicit: boolean;
  startTimeoutMs: number;
  sandbox: ResolvedSandbox;
}

const MIB = 1024 * 1024;

export const EXECUTOR_DEFAULTS = Object.freeze({
  poolSize: 32,
  timeoutMs: 10_000,
  maxTimeoutMs: 300_000,
  maxPending: 1024,
  maxQueueWaitMs: 120_000,
  maxSessionsPerInterpreter: 64,
  maxOutputBytes: 256 * 1024,
  python: "python3",
  startTimeoutMs: 15_000,
});

export const SANDBOX_DEFAULTS = Object.freeze({
  enabled: true,
  memoryBytes: 1024 * MIB,
  fileSizeBytes: 64 * MIB,
  maxProcesses: 64,
  network: false,
  isolateUser: true,
});

const WHERE = "PythonExecutorService options";
const KNOWN = new Set([...Object.keys(EXECUTOR_DEFAULTS), "sandbox"]);
const SANDBOX_KNOWN = new Set([...Object.keys(SANDBOX_DEFAULTS), "cpuSeconds", "env"]);

function unknownKeys(o: object, known: Set<string>, where: string): void {
  for (const k of Object.keys(o)) {
    if (!known.has(k)) {
      throw new InvalidOptionsError(`${where}: unknown option "${k}"; valid options are ${[...known].join(", ")}`, { details: { option: k } });
    }
  }
}

function checkBool(where: string, key: string, v: unknown): boolean {
  if (typeof v !== "boolean") throw new InvalidOptionsError(`${where}: ${key} must be true or false (got ${String(v)})`, { details: { option: key } });
  return v;
}

export function resolveSandbox(s: SandboxOptions | boolean | undefined): ResolvedSandbox {
  const where = `${WHERE}: sandbox`;
  const o: SandboxOptions = s === undefined || s === true ? {} : s === false ? { enabled: false } : s;
  if (typeof o !== "object" || o === null) throw new InvalidOptionsError(`${where} must be an object such as { memoryBytes: 512 * 1024 * 1024 }, or false`);
  unknownKeys(o, SANDBOX_KNOWN, where);
  const r = { ...SANDBOX_DEFAULTS, ...o };
  const env = o.env ?? {};
  if (typeof env !== "object" || env === null || Object.values(env).some((v) => typeof v !== "string")) {
    throw new InvalidOptionsError(`${where}: env must map names to strings, e.g. { OMP_NUM_THREADS: "1" }`, { details: { option: "env" } });
  }
  return {
    enabled: checkBool(where, "enabled", r.enabled),
    memoryBytes: checkInt(where, "memoryBytes", r.memoryBytes, 64 * MIB, "Python itself needs tens of MiB; use bytes, e.g. 512 * 1024 * 1024"),
    fileSizeBytes: checkInt(where, "fileSizeBytes", r.fileSizeBytes, MIB, "use bytes, e.g. 64 * 1024 * 1024"),
    maxProcesses: checkInt(where, "maxProcesses", r.maxProcesses, 4, "the interpreter and its threads count too"),
    cpuSeconds: o.cpuSeconds === undefined ? null : checkInt(where, "cpuSeconds", o.cpuSeconds, 1, "CPU seconds per call, or leave it out to follow timeoutMs"),
    network: checkBool(where, "network", r.network),
    isolateUser: checkBool(where, "isolateUser", r.isolateUser),
    env: { ...env },
  };
}

export function resolveExecutorOptions(opts: PythonExecutorOptions | undefined): ResolvedExecutorOptions {
  const o = opts ?? {};
  if (typeof o !== "object" || o === null) throw new InvalidOptionsError(`${WHERE} must be an object such as { poolSize: 8, timeoutMs: 10_000 }`);
  unknownKeys(o, KNOWN, WHERE);
  const r = { ...EXECUTOR_DEFAULTS, ...o };
  if (typeof r.python !== "string" || r.python.length === 0) {
    throw new InvalidOptionsError(`${WHERE}: python must be an executable name or path such as "python3"`, { details: { option: "python" } });
  }
  const timeoutMs = checkInt(WHERE, "timeoutMs", r.timeoutMs, 1, "milliseconds per execution, e.g. 10_000");
  const maxTimeoutMs = checkInt(WHERE, "maxTimeoutMs", r.maxTimeoutMs, 1, "milliseconds");
  if (maxTimeoutMs < timeoutMs) {
    throw new InvalidOptionsError(`${WHERE}: maxTimeoutMs (${maxTimeoutMs}) must be >= timeoutMs (${timeoutMs})`, { details: { option: "maxTimeoutMs" } });
  }
  return {
    poolSize: checkInt(WHERE, "poolSize", r.poolSize, 1, "the number of interpreter processes, e.g. 32"),
    timeoutMs,
    maxTimeoutMs,
    maxPending: checkInt(WHERE, "maxPending", r.maxPending, 0, "use 0 to reject executions while every interpreter is busy"),
    maxQueueWaitMs: checkInt(WHERE, "maxQueueWaitMs", r.maxQueueWaitMs, 1, "milliseconds"),
    maxSessionsPerInterpreter: checkInt(WHERE, "maxSessionsPerInterpreter", r.maxSessionsPerInterpreter, 1, "sessions whose state one interpreter keeps"),
    maxOutputBytes: checkInt(WHERE, "maxOutputBytes", r.maxOutputBytes, 1024, "bytes kept of stdout and of stderr"),
    python: r.python,
    pythonExplicit: o.python !== undefined,
    startTimeoutMs: checkInt(WHERE, "startTimeoutMs", r.startTimeoutMs, 100, "milliseconds"),
    sandbox: resolveSandbox(o.sandbox),
  };
}

export interface ExecuteOptions {
  /** Calls with the same sessionId share globals; without one, each call starts fresh. */
  sessionId?: string;
  /** This call's wall-clock limit (up to maxTimeoutMs); default: the service's timeoutMs. */
  timeoutMs?: number;
}

export function resolveExecuteOptions(o: ExecuteOptions | undefined, opts: ResolvedExecutorOptions): { sessionId: string | undefined; timeoutMs: number } {
  const where = "execute options";
  const e = o ?? {};
  if (typeof e !== "object" || e === null) throw new InvalidOptionsError(`${where} must be an object such as { sessionId: "env-1" }`);
  unknownKeys(e, new Set(["sessionId", "timeoutMs"]), where);
  if (e.sessionId !== undefined && (typeof e.sessionId !== "string" || e.sessionId.length === 0 || e.sessionId.length > 256)) {
    throw new InvalidOptionsError(`${where}: sessionId must be a non-empty string of at most 256 characters`, { details: { option: "sessionId" } });
  }
  const timeoutMs = e.timeoutMs === undefined ? opts.timeoutMs : checkInt(where, "timeoutMs", e.timeoutMs, 1, "milliseconds");
  if (timeoutMs > opts.maxTimeoutMs) {
    throw new InvalidOptionsError(`${where}: timeoutMs ${timeoutMs} is above the service's maxTimeoutMs ${opts.maxTimeoutMs}`, { details: { option: "timeoutMs" } });
  }
  return { sessionId: e.sessionId, timeoutMs };
}
