import { activeCall } from "../call/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import { bool, defineOptions, durationMs, int, str, stringRecord, type SpecFor } from "../options/index.ts";

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

const sandboxOptions = defineOptions(
  `${WHERE}: sandbox`,
  {
    enabled: bool(),
    memoryBytes: int({ min: 64 * MIB, hint: "Python itself needs tens of MiB; use bytes, e.g. 512 * 1024 * 1024" }),
    fileSizeBytes: int({ min: MIB, hint: "use bytes, e.g. 64 * 1024 * 1024" }),
    maxProcesses: int({ min: 4, hint: "the interpreter and its threads count too" }),
    cpuSeconds: int({ min: 1, hint: "CPU seconds per call, or leave it out to follow timeoutMs" }),
    network: bool(),
    isolateUser: bool(),
    env: stringRecord('e.g. { OMP_NUM_THREADS: "1" }'),
  } satisfies SpecFor<SandboxOptions>,
  () => ({ ...SANDBOX_DEFAULTS, env: {} }),
  { example: "{ memoryBytes: 512 * 1024 * 1024 }, or false" },
);

export function resolveSandbox(s: SandboxOptions | boolean | undefined, where = sandboxOptions.where): ResolvedSandbox {
  const r = sandboxOptions.parse(s === undefined || s === true ? {} : s === false ? { enabled: false } : s, where);
  return { ...r, cpuSeconds: r.cpuSeconds ?? null };
}

const executorOptions = defineOptions(
  WHERE,
  {
    poolSize: int({ min: 1, hint: "the number of interpreter processes, e.g. 32" }),
    timeoutMs: durationMs({ min: 1, hint: "the wall-clock limit of one execution, e.g. 10_000" }),
    maxTimeoutMs: durationMs({ min: 1, hint: "the largest per-call timeoutMs a caller may ask for" }),
    maxPending: int({ min: 0, hint: "use 0 to reject executions while every interpreter is busy" }),
    maxQueueWaitMs: durationMs({ min: 1, hint: "the longest wait for an interpreter" }),
    maxSessionsPerInterpreter: int({ min: 1, hint: "sessions whose state one interpreter keeps" }),
    maxOutputBytes: int({ min: 1024, hint: "bytes kept of stdout and of stderr" }),
    python: str({ nonEmpty: true, expected: 'an executable name or path such as "python3"' }),
    startTimeoutMs: durationMs({ min: 100, hint: "how long an interpreter may take to start" }),
    sandbox: (v: unknown, key: string, where: string) => resolveSandbox(v as SandboxOptions | boolean, `${where}: ${key}`),
  } satisfies SpecFor<PythonExecutorOptions>,
  () => ({ ...EXECUTOR_DEFAULTS }),
  { example: "{ poolSize: 8, timeoutMs: 10_000 }" },
);

export function resolveExecutorOptions(opts: PythonExecutorOptions | undefined): ResolvedExecutorOptions {
  const r = executorOptions.parse(opts);
  if (r.maxTimeoutMs < r.timeoutMs) {
    throw new InvalidOptionsError(`${WHERE}: maxTimeoutMs (${r.maxTimeoutMs}) must be >= timeoutMs (${r.timeoutMs}); raise maxTimeoutMs or lower timeoutMs`, { details: { option: "maxTimeoutMs" } });
  }
  return { ...r, sandbox: r.sandbox ?? resolveSandbox(undefined), pythonExplicit: opts?.python !== undefined };
}

export interface ExecuteOptions {
  /** Calls with the same sessionId share globals; without one, each call starts fresh. */
  sessionId?: string;
  /** This call's wall-clock limit (up to maxTimeoutMs); default: the service's timeoutMs. */
  timeoutMs?: number;
}

const executeOptions = defineOptions(
  "execute options",
  {
    sessionId: str({ nonEmpty: true, maxLength: 256 }),
    timeoutMs: durationMs({ min: 1, hint: "this call's wall-clock limit" }),
  } satisfies SpecFor<ExecuteOptions>,
  {},
  { example: '{ sessionId: "env-1" }' },
);

/** An execution's options checked, with the service's defaults applied. */
export function parseExecuteOptions(o: ExecuteOptions | undefined, opts: ResolvedExecutorOptions): { sessionId: string | undefined; timeoutMs: number } {
  // Over the wire an omitted `undefined` argument arrives as null (msgpack has no undefined).
  const e = o === undefined || o === null ? NO_OPTIONS : executeOptions.parse(o);
  const timeoutMs = e.timeoutMs ?? opts.timeoutMs;
  if (timeoutMs > opts.maxTimeoutMs) {
    throw new InvalidOptionsError(`${executeOptions.where}: timeoutMs ${timeoutMs} is above the service's maxTimeoutMs ${opts.maxTimeoutMs}; ask for less or raise maxTimeoutMs`, { details: { option: "timeoutMs" } });
  }
  return { sessionId: e.sessionId, timeoutMs };
}
const NO_OPTIONS: ExecuteOptions = Object.freeze({});

/**
 * parseExecuteOptions plus the signal of the call being served, if any: the caller's cancel or
 * deadline kills the execution, as a timeout does. (The pool takes the call itself, activeCall().)
 */
export function resolveExecuteOptions(o: ExecuteOptions | undefined, opts: ResolvedExecutorOptions): { sessionId: string | undefined; timeoutMs: number; signal: AbortSignal | undefined } {
  return { ...parseExecuteOptions(o, opts), signal: activeCall()?.signal };
}
