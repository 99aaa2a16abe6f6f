import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import { encodeFrame, FrameDecoder } from "./framing.ts";
import type { ResolvedExecutorOptions } from "./options.ts";
import { pickUid, pythonFlags, rlimitsFor, sandboxEnv, sweepUid, wrapperArgs, type SandboxPlan } from "./sandbox.ts";

/** What the runner answers for one execution (see runner.py). */
export interface RunnerResult {
  id: number;
  ok: boolean;
  returncode: number;
  stdout: string;
  stderr: string;
  truncated: boolean;
  memoryError: boolean;
  durationMs: number;
}

export interface Captured {
  stdout: string;
  stderr: string;
  truncated: boolean;
}

export type Outcome =
  | { kind: "ok"; result: RunnerResult }
  | ({ kind: "timeout" } & Captured)
  /** The caller cancelled: killed like a timeout, and the caller gets CancelledError. */
  | ({ kind: "cancelled" } & Captured)
  /** The process died mid-call (os._exit, segfault, rlimit signal) or broke the protocol. */
  | ({ kind: "died"; code: number | null; signal: NodeJS.Signals | null; reason?: string } & Captured);

export interface ExecRequest {
  /** Session key inside the interpreter; null runs in a throwaway globals dict. */
  key: string | null;
  code: string;
  /** Session keys to forget first (evicted or reset sessions). */
  drop: string[];
  timeoutMs: number;
}

/**
 * One interpreter process: a runner.py child in its own process group (and uid, and network
 * namespace, when the sandbox allows), with a private directory holding its working dir and the
 * per-call capture files. One execution at a time; the pool serializes.
 */
export interface InterpreterProcess {
  readonly pid: number | undefined;
  /** The dedicated uid, or null when the process runs as this process's user. */
  readonly uid: number | null;
  /** Resolves once the runner said it is ready; rejects (with startup stderr) if it died first. */
  readonly ready: Promise<void>;
  readonly alive: boolean;
  /** Runs one request; `done` is called once, never synchronously. */
  exec(req: ExecRequest, done: (o: Outcome) => void): void;
  /**
   * The caller of the request in flight gave up (cancelled, or its deadline passed): the
   * execution is killed as at a timeout, and its outcome is "cancelled". No-op when idle.
   */
  cancel(): void;
  /** Called once when the process exits, whatever the cause. */
  onExit(cb: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  /** Kills the process group (and the uid's strays) and removes its directory. Idempotent. */
  dispose(): Promise<void>;
}

export interface LaunchParams {
  plan: SandboxPlan;
  opts: ResolvedExecutorOptions;
  /** Directory holding runner.py, readable by the sandbox uid. */
  poolDir: string;
  runnerPath: string;
}

const STARTUP_STDERR_BYTES = 8192;

export function startInterpreter(p: LaunchParams): InterpreterProcess {
  const { plan, opts } = p;
  const uid = plan.enabled && plan.dedicatedUid ? pickUid() : null;
  const root = mkdtempSync(join(p.poolDir, "i-"));
  chmodSync(root, 0o711); // the sandbox uid may pass through, not list
  const workDir = join(root, "work");
  const ioDir = join(root, "io");
  mkdirSync(workDir, { mode: 0o700 });
  mkdirSync(ioDir, { mode: 0o700 });
  if (uid !== null) {
    chownSync(workDir, uid, uid);
    chownSync(ioDir, uid, uid);
  }
  const config = {
    fd: 3,
    workDir,
    ioDir,
    maxOutputBytes: opts.maxOutputBytes,
    parentPid: process.pid,
    limits: rlimitsFor(plan, opts),
    // The runner kills its uid's leftover processes after each call, and checks it really runs as this uid.
    sweepUid: uid,
  };
  const argv = [...wrapperArgs(plan, uid), plan.python, ...pythonFlags(plan), p.runnerPath, JSON.stringify(config)];
  let child: ChildProcess;
  let exited = false;
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitCbs: ((code: number | null, signal: NodeJS.Signals | null) => void)[] = [];
  let startupStderr = "";
  let nextId = 1;
  let inflight: { id: number; done: (o: Outcome) => void; limitAt: number } | undefined;
  let readyResolve!: () => void;
  let readyReject!: (e: Error) => void;
  let isReady = false;
  const ready = new Promise<void>((res, rej) => ((readyResolve = res), (readyReject = rej)));
  ready.catch(() => {}); // observed by the pool; never an unhandled rejection
  let exitedPromiseResolve!: () => void;
  const exitedPromise = new Promise<void>((r) => (exitedPromiseResolve = r));
  let disposing: Promise<void> | undefined;

  child = spawn(argv[0]!, argv.slice(1), {
    cwd: workDir,
    env: sandboxEnv(opts, workDir),
    // fd 0: /dev/null (user code's stdin); fd 1: nothing; fd 2: startup errors only (the runner
    // points 1 and 2 at capture files during calls); fd 3: the framed channel.
    stdio: ["ignore", "ignore", "pipe", "pipe"],
    detached: true, // own process group: one kill reaches everything user code forked
  });
  const chan = child.stdio[3] as Socket;
  const decoder = new FrameDecoder();

  const startTimer = setTimeout(() => {
    if (!isReady) {
      readyReject(new Error(`interpreter did not start within ${opts.startTimeoutMs} ms${startupStderr ? `: ${startupStderr.trim()}` : ""}`));
      killGroup();
    }
  }, opts.startTimeoutMs);

  const killGroup = () => {
    if (exited || child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  };

  const capturePath = (name: string) => join(ioDir, name);
  const readCaptured = async (): Promise<Captured> => {
    const [out, err] = await Promise.all([readCapture(capturePath("stdout"), opts.maxOutputBytes), readCapture(capturePath("stderr"), opts.maxOutputBytes)]);
    return { stdout: out.text, stderr: err.text, truncated: out.truncated || err.truncated };
  };

  const finishInflight = (o: Outcome) => {
    const f = inflight;
    if (!f) return;
    inflight = undefined;
    f.done(o);
  };

  // Python cannot be interrupted safely mid-statement: a timeout or a cancel kills the process
  // group, and the pool replaces the interpreter.
  const cut = (kind: "timeout" | "cancelled") => {
    const f = inflight;
    if (!f) return;
    // Take the call back first so the exit handler does not report it as a crash.
    inflight = undefined;
    killGroup();
    readCaptured().then(
      (c) => f.done({ kind, ...c }),
      () => f.done({ kind, stdout: "", stderr: "", truncated: false }),
    );
  };

  // The time limit of the call in flight: one timer per process, not one per call. It stays
  // armed past the call it was set for, and is re-armed only when a call's limit comes before
  // the armed time: calls usually share one timeoutMs, so after the first call a call neither
  // makes nor clears a timer. When it fires it cuts the call in flight if that one is past its
  // limit, else waits for that call's limit (or for nothing, when idle).
  let limitTimer: NodeJS.Timeout | undefined;
  let limitArmedAt = Infinity;
  const armLimit = (at: number) => {
    if (at >= limitArmedAt) return;
    clearTimeout(limitTimer);
    limitArmedAt = at;
    limitTimer = setTimeout(onLimit, Math.max(0, Math.ceil(at - performance.now())));
    // The channel and the child keep the event loop alive while a call runs.
    limitTimer.unref();
  };
  const onLimit = () => {
    limitTimer = undefined;
    limitArmedAt = Infinity;
    const f = inflight;
    if (!f) return;
    if (performance.now() >= f.limitAt) cut("timeout");
    else armLimit(f.limitAt);
  };

  const protocolFailure = (reason: string) => {
    // Anything unexpected on the channel (user code writing to fd 3, a broken runner): this
    // process cannot be trusted any more. Kill it; the exit handler reports the in-flight call.
    protocolReason ??= reason;
    killGroup();
  };
  let protocolReason: string | undefined;

  chan.on("data", (chunk: Buffer) => {
    let frames: unknown[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      return protocolFailure(`protocol error: ${(err as Error).message}`);
    }
    for (const f of frames) {
      const msg = f as Record<string, unknown>;
      if (!isReady) {
        if (msg?.op === "ready") {
          isReady = true;
          clearTimeout(startTimer);
          readyResolve();
        } else protocolFailure("protocol error: first frame was not 'ready'");
        continue;
      }
      if (!inflight || msg?.id !== inflight.id || typeof msg.ok !== "boolean") {
        return protocolFailure("protocol error: unexpected frame from the interpreter");
      }
      finishInflight({ kind: "ok", result: msg as unknown as RunnerResult });
    }
  });
  chan.on("error", () => {}); // EPIPE when the process died; the exit handler reports it
  child.stderr!.on("data", (d: Buffer) => {
    if (startupStderr.length < STARTUP_STDERR_BYTES) startupStderr += d.toString("utf8").slice(0, STARTUP_STDERR_BYTES - startupStderr.length);
  });
  child.on("error", (err) => {
    // spawn failed (ENOENT...): no 'exit' follows in some cases
    startupStderr ||= err.message;
    onChildExit(null, null);
  });
  child.on("exit", (code, signal) => onChildExit(code, signal));

  function onChildExit(code: number | null, signal: NodeJS.Signals | null) {
    if (exited) return;
    exited = true;
    exitInfo = { code, signal };
    clearTimeout(startTimer);
    clearTimeout(limitTimer);
    limitArmedAt = -Infinity; // never armed again
    if (!isReady) {
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      readyReject(new Error(`interpreter exited during startup (${how})${startupStderr ? `: ${startupStderr.trim()}` : ""}`));
    }
    chan.destroy();
    if (inflight) {
      const f = inflight;
      readCaptured().then(
        (c) => finishInflight({ kind: "died", code, signal, reason: protocolReason, ...c }),
        () => finishInflight({ kind: "died", code, signal, reason: protocolReason, stdout: "", stderr: "", truncated: false }),
      );
      void f;
    }
    for (const cb of exitCbs.splice(0)) cb(code, signal);
    exitedPromiseResolve();
  }

  return {
    get pid() {
      return child.pid;
    },
    uid,
    ready,
    get alive() {
      return !exited;
    },
    exec(req: ExecRequest, done: (o: Outcome) => void): void {
      if (inflight || exited || !isReady) {
        const reason = inflight ? "interpreter is busy (the pool serializes calls)" : "interpreter not running";
        const o: Outcome = { kind: "died", code: exitInfo?.code ?? null, signal: exitInfo?.signal ?? null, reason, stdout: "", stderr: "", truncated: false };
        process.nextTick(done, o);
        return;
      }
      const id = nextId++;
      const cpuSeconds = opts.sandbox.enabled ? (opts.sandbox.cpuSeconds ?? Math.ceil(req.timeoutMs / 1000) + 1) : null;
      // The request first: the interpreter starts on it while the rest is set up here. Its
      // reply is read in a later turn of the event loop, when all of this is in place.
      chan.write(encodeFrame({ op: "exec", id, key: req.key, code: req.code, drop: req.drop, cpuSeconds }));
      const limitAt = performance.now() + req.timeoutMs;
      inflight = { id, done, limitAt };
      armLimit(limitAt);
    },
    cancel(): void {
      cut("cancelled");
    },
    onExit(cb) {
      if (exited) cb(exitInfo!.code, exitInfo!.signal);
      else exitCbs.push(cb);
    },
    dispose() {
      disposing ??= (async () => {
        killGroup();
        await exitedPromise;
        if (uid !== null) await sweepUid(plan, uid);
        rmSync(root, { recursive: true, force: true, maxRetries: 3 });
      })();
      return disposing;
    },
  };
}

async function readCapture(path: string, cap: number): Promise<{ text: string; truncated: boolean }> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return { text: "", truncated: false };
  }
  try {
    const { size } = await fh.stat();
    const n = Math.min(size, cap);
    const buf = Buffer.alloc(n);
    let off = 0;
    while (off < n) {
      const { bytesRead } = await fh.read(buf, off, n - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return { text: buf.subarray(0, off).toString("utf8"), truncated: size > cap };
  } finally {
    await fh.close();
  }
}
