import { chmodSync, copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { activeCall, type CallContext } from "../call/index.ts";
import { CancelledError, ClosedError, OverloadedError } from "../errors/index.ts";
import { InterpreterStartError } from "./errors.ts";
import { startInterpreter, type InterpreterProcess, type Outcome } from "./interpreter-process.ts";
import { parseExecuteOptions, type ExecuteOptions, type ResolvedExecutorOptions } from "./options.ts";
import { toResult, describeExit, type ExecutionResult } from "./result.ts";
import { planSandbox, rssOf, sandboxInfo, type SandboxInfo, type SandboxPlan } from "./sandbox.ts";
import { SessionTable, type SessionRec } from "./sessions.ts";

const RUNNER_SOURCE = fileURLToPath(new URL("./runner.py", import.meta.url));
/** Startup failures in a row after which a slot counts as broken (it keeps retrying, slowly). */
const MAX_START_FAILURES = 3;
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** An interpreter dying on its own this soon after starting counts as a failed start. */
const EARLY_DEATH_MS = 1_000;

export interface InterpreterStats {
  index: number;
  state: SlotState;
  pid: number | null;
  uid: number | null;
  sessions: number;
  executions: number;
  restarts: number;
  rssBytes: number | null;
}

export interface ExecutorStats {
  poolSize: number;
  /** Interpreters ready or running code. */
  alive: number;
  idle: number;
  busy: number;
  /** Executions waiting for an interpreter. */
  queued: number;
  sessions: number;
  executions: number;
  timeouts: number;
  crashes: number;
  restarts: number;
  evictions: number;
  sandbox: SandboxInfo;
  interpreters: InterpreterStats[];
  /** Why interpreters cannot start, while they cannot. */
  startError?: string;
}

export interface ExecutorPool {
  execute(code: string, options?: ExecuteOptions): Promise<ExecutionResult>;
  /** Forgets a session's state; true if there was any. */
  reset(sessionId: string): boolean;
  stats(): ExecutorStats;
  /** Resolves when every interpreter has started once; rejects if they cannot start. */
  ready(): Promise<void>;
  close(): Promise<void>;
  readonly closed: boolean;
}

export interface PoolDeps {
  /** A plan shared by several pools (PythonInterpreter's local modes), probed once. */
  plan?: Promise<SandboxPlan | { error: string }>;
}

type SlotState = "starting" | "idle" | "busy" | "down" | "closed";

interface Slot {
  index: number;
  proc: InterpreterProcess | undefined;
  state: SlotState;
  readyAt: number;
  lastUsedAt: number;
  /** Executions pinned here (their session's state lives here) waiting for this interpreter. */
  queue: Job[];
  /** Session keys the interpreter must forget before its next execution. */
  drop: string[];
  startFailures: number;
  lastStartError?: string;
  restartTimer?: NodeJS.Timeout;
  executions: number;
  restarts: number;
  everReady: boolean;
}

interface Job {
  code: string;
  sessionId: string | undefined;
  timeoutMs: number;
  /** The served call this execution belongs to: its cancel or deadline kills the execution. */
  call: CallContext | undefined;
  /** Listens for the call's abort from submit() until the job settles (see listenForAbort). */
  onAbort?: () => void;
  /** The interpreter running it, once started. */
  proc?: InterpreterProcess;
  enqueuedAt: number;
  resetReason?: string;
  waitTimer?: NodeJS.Timeout;
  resolve(r: ExecutionResult): void;
  reject(e: Error): void;
}

/**
 * A fixed pool of persistent interpreters shared by many sessions. Dispatch: a session's calls
 * go to the interpreter holding its state (in order, one at a time); new and stateless calls go
 * to an idle interpreter (fewest sessions first); when none is free they wait, up to maxPending.
 * A timeout, crash or MemoryError replaces the interpreter; the pool always returns to full size.
 */
export function createExecutorPool(opts: ResolvedExecutorOptions, deps: PoolDeps = {}): ExecutorPool {
  const slots: Slot[] = Array.from({ length: opts.poolSize }, (_, index) => ({
    index,
    proc: undefined,
    state: "starting" as SlotState,
    readyAt: 0,
    lastUsedAt: 0,
    queue: [],
    drop: [],
    startFailures: 0,
    executions: 0,
    restarts: 0,
    everReady: false,
  }));
  const shared: Job[] = [];
  const table = new SessionTable<Slot>(opts.maxSessionsPerInterpreter);
  const tails = new Map<string, Promise<void>>();
  const disposals = new Set<Promise<void>>();
  const counters = { executions: 0, timeouts: 0, crashes: 0, restarts: 0 };
  let queued = 0; // jobs in `shared` and slot queues, plus calls waiting behind their session's previous call
  let closed = false;
  let closing: Promise<void> | undefined;
  let plan: SandboxPlan | undefined;
  let poolDir: string | undefined;
  let runnerPath = "";
  let fatal: InterpreterStartError | undefined;
  /** Set while every interpreter keeps failing to start; cleared when one starts. */
  let broken: InterpreterStartError | undefined;
  const readyWaiters: { resolve(): void; reject(e: Error): void }[] = [];

  const planned = (deps.plan ?? planSandbox(opts)).then(
    (p) => {
      if (closed) return;
      if ("error" in p) return fail(new InterpreterStartError(`cannot start Python interpreters: ${p.error}`, { details: { python: opts.python } }));
      plan = p;
      try {
        poolDir = mkdtempSync(join(tmpdir(), "actorbus-py-"));
        chmodSync(poolDir, 0o711); // interpreters run as other uids: they may traverse, not list
        runnerPath = join(poolDir, "runner.py");
        copyFileSync(RUNNER_SOURCE, runnerPath);
        chmodSync(runnerPath, 0o644);
      } catch (err) {
        return fail(new InterpreterStartError(`cannot prepare the interpreters' directory: ${(err as Error).message}`));
      }
      for (const slot of slots) spawn(slot);
    },
    (err) => fail(new InterpreterStartError(`cannot probe the sandbox: ${(err as Error).message}`)),
  );

  function fail(err: InterpreterStartError): void {
    fatal = err;
    for (const w of readyWaiters.splice(0)) w.reject(err);
    rejectQueued(err);
  }

  function rejectQueued(err: Error): void {
    const jobs = [...shared.splice(0), ...slots.flatMap((s) => s.queue.splice(0))];
    for (const job of jobs) {
      clearTimeout(job.waitTimer);
      queued--;
      unlisten(job);
      job.reject(err);
    }
  }

  function spawn(slot: Slot): void {
    if (closed || !plan || !poolDir) return;
    slot.state = "starting";
    let proc: InterpreterProcess;
    try {
      proc = startInterpreter({ plan, opts, poolDir, runnerPath });
    } catch (err) {
      return startFailed(slot, err as Error);
    }
    slot.proc = proc;
    proc.onExit((code, signal) => onExit(slot, proc, code, signal));
    proc.ready.then(
      () => {
        if (slot.proc !== proc || closed) return;
        slot.state = "idle";
        slot.readyAt = Date.now();
        broken = undefined;
        if (!slot.everReady) {
          slot.everReady = true;
          if (slots.every((s) => s.everReady)) for (const w of readyWaiters.splice(0)) w.resolve();
        }
        dispatch();
      },
      (err: Error) => {
        if (slot.proc === proc) startFailed(slot, err);
      },
    );
  }

  function startFailed(slot: Slot, err: Error): void {
    retire(slot);
    if (closed) return;
    slot.state = "down";
    slot.startFailures++;
    slot.lastStartError = err.message;
    if (slots.every((s) => s.startFailures >= MAX_START_FAILURES)) {
      broken = new InterpreterStartError(`Python interpreters keep failing to start (${MAX_START_FAILURES} times each; retrying every few seconds): ${err.message}`, {
        details: { python: plan?.python ?? opts.python },
      });
      for (const w of readyWaiters.splice(0)) w.reject(broken);
      rejectQueued(broken);
    }
    const delay = Math.min(BACKOFF_BASE_MS * 2 ** (slot.startFailures - 1), BACKOFF_MAX_MS);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      spawn(slot);
    }, delay);
  }

  /** Detaches the slot's process and disposes of it in the background (close() awaits it). */
  function retire(slot: Slot): void {
    const proc = slot.proc;
    slot.proc = undefined;
    if (!proc) return;
    const d = proc.dispose().catch(() => {});
    disposals.add(d);
    void d.finally(() => disposals.delete(d));
  }

  function onExit(slot: Slot, proc: InterpreterProcess, code: number | null, signal: NodeJS.Signals | null): void {
    // Mid-call deaths are reported through the call's outcome; startup deaths through `ready`.
    if (slot.proc !== proc || slot.state !== "idle") return;
    const early = Date.now() - slot.readyAt < EARLY_DEATH_MS && slot.lastUsedAt < slot.readyAt;
    if (!early) slot.startFailures = 0;
    counters.crashes++;
    replace(slot, `the interpreter ${describeExit(code, signal)} while idle`);
    if (early) {
      // Dying right after a good start, with no call running: treat as a crash loop.
      startFailed(slot, new Error(`interpreter ${describeExit(code, signal)} right after starting`));
    } else respawn(slot);
    dispatch();
  }

  /** Forgets everything the slot's interpreter held; its queued calls go back to any interpreter. */
  function replace(slot: Slot, reason: string): void {
    retire(slot);
    slot.drop = [];
    slot.restarts++;
    counters.restarts++;
    const why = `the interpreter holding it was replaced after ${reason}`;
    for (const rec of table.clearSlot(slot)) table.tombstone(rec.id, why);
    for (const job of slot.queue.splice(0)) {
      job.resetReason ??= why;
      shared.push(job);
    }
  }

  function respawn(slot: Slot): void {
    if (closed) return;
    slot.state = "starting";
    spawn(slot);
  }

  /**
   * A new session stays where it is first placed, so do not pile it onto an interpreter that
   * already holds sessions while one with fewer is just starting (warm-up, replacement): waiting
   * a few tens of milliseconds beats a permanently unbalanced pool.
   */
  function placeable(slot: Slot, job: Job): boolean {
    if (job.sessionId === undefined) return true;
    const n = table.countOn(slot);
    return n === 0 || !slots.some((s) => s.state === "starting" && table.countOn(s) < n);
  }

  /**
   * Fewest sessions first. Among equals, a new session takes the least recently used (spreads
   * sessions), a stateless call the most recently used: a process that ran a moment ago is still
   * warm (caches, CPU), which shortens a trivial call by ~10% over rotating through cold ones.
   */
  function pickIdle(job: Job): Slot | undefined {
    const stateless = job.sessionId === undefined;
    let best: Slot | undefined;
    for (const s of slots) {
      if (s.state !== "idle" || !placeable(s, job)) continue;
      if (!best || table.countOn(s) < table.countOn(best)) best = s;
      else if (table.countOn(s) === table.countOn(best) && (stateless ? s.lastUsedAt > best.lastUsedAt : s.lastUsedAt < best.lastUsedAt)) best = s;
    }
    return best;
  }

  function overloaded(): OverloadedError {
    const busy = slots.filter((s) => s.state === "busy").length;
    return new OverloadedError(
      `python executor overloaded: ${busy} of ${opts.poolSize} interpreters busy and ${queued} executions waiting (maxPending ${opts.maxPending}); retry with backoff or use a larger pool`,
      { details: { busy, queued, maxPending: opts.maxPending, poolSize: opts.poolSize } },
    );
  }

  function enqueue(queue: Job[], job: Job): void {
    if (queued >= opts.maxPending) {
      unlisten(job);
      return job.reject(overloaded());
    }
    queued++;
    queue.push(job);
    job.waitTimer = setTimeout(
      () => leave(job, new OverloadedError(`no interpreter became free within ${opts.maxQueueWaitMs} ms (maxQueueWaitMs)`, { details: { maxQueueWaitMs: opts.maxQueueWaitMs } })),
      opts.maxQueueWaitMs,
    );
  }

  /** A queued job leaves its queue (the shared one, or its slot's: a replaced slot's went to the shared one) and fails. */
  function leave(job: Job, err: Error): void {
    for (const queue of [shared, ...slots.map((s) => s.queue)]) {
      const i = queue.indexOf(job);
      if (i < 0) continue;
      queue.splice(i, 1);
      queued--;
      clearTimeout(job.waitTimer);
      unlisten(job);
      return job.reject(err);
    }
  }

  const cancelledError = () => new CancelledError("the execution was cancelled by its caller");

  /**
   * The job hears its call's abort from now until it settles: queued, it leaves the queue and
   * never runs; running, its interpreter is killed (the outcome "cancelled" rejects it). False
   * when the call was aborted already.
   */
  function listenForAbort(job: Job, call: CallContext): boolean {
    const onAbort = (job.onAbort = () => {
      if (job.proc) job.proc.cancel();
      else leave(job, cancelledError());
    });
    // A host's call context tells without an AbortSignal (no AbortController, no timer); any
    // other context through its signal.
    if (call.addAbortListener) return call.addAbortListener(onAbort);
    if (call.signal.aborted) return false;
    call.signal.addEventListener("abort", onAbort, { once: true });
    return true;
  }

  function unlisten(job: Job): void {
    const { call, onAbort } = job;
    if (!call || !onAbort) return;
    job.onAbort = undefined;
    if (call.removeAbortListener) call.removeAbortListener(onAbort);
    else call.signal.removeEventListener("abort", onAbort);
  }

  function submit(code: string, sessionId: string | undefined, timeoutMs: number, call: CallContext | undefined): Promise<ExecutionResult> {
    return new Promise<ExecutionResult>((resolve, reject) => {
      const job: Job = { code, sessionId, timeoutMs, call, enqueuedAt: performance.now(), resolve, reject };
      if (fatal ?? broken) return reject(fatal ?? broken);
      // Cancelled (or past its deadline) before it got here: it never runs.
      if (call && !listenForAbort(job, call)) return reject(cancelledError());
      const rec = sessionId === undefined ? undefined : table.get(sessionId);
      if (rec) {
        table.touch(rec);
        if (rec.slot.state === "idle") return start(rec.slot, job);
        return enqueue(rec.slot.queue, job);
      }
      const slot = pickIdle(job);
      if (slot) return start(slot, job);
      enqueue(shared, job);
    });
  }

  function start(slot: Slot, job: Job): void {
    clearTimeout(job.waitTimer);
    let key: string | null = null;
    if (job.sessionId !== undefined) {
      let rec: SessionRec<Slot> | undefined = table.get(job.sessionId);
      if (rec && rec.slot !== slot) {
        // Cannot happen while a session has one call at a time; if it does, do not run its code
        // against a stale copy of its state elsewhere.
        slot.drop.push(rec.key);
        table.remove(rec);
        rec = undefined;
      }
      if (!rec) {
        job.resetReason ??= table.tombstoneOf(job.sessionId);
        for (const evicted of table.evictFor(slot, (id) => tails.has(id) && id !== job.sessionId)) {
          evicted.slot.drop.push(evicted.key);
        }
        rec = table.pin(job.sessionId, slot);
      }
      key = rec.key;
    }
    slot.state = "busy";
    slot.lastUsedAt = Date.now();
    const proc = slot.proc!;
    const drop = slot.drop.splice(0);
    const t0 = performance.now();
    const queuedMs = t0 - job.enqueuedAt;
    job.proc = proc;
    proc.exec({ key, code: job.code, drop, timeoutMs: job.timeoutMs }, (o) => finish(slot, proc, job, o, performance.now() - t0, queuedMs));
  }

  function finish(slot: Slot, proc: InterpreterProcess, job: Job, o: Outcome, durationMs: number, queuedMs: number): void {
    unlisten(job);
    if (closed) return job.reject(new ClosedError("the python executor was closed during the execution"));
    counters.executions++;
    slot.executions++;
    let replaced: string | undefined;
    if (o.kind === "timeout") {
      counters.timeouts++;
      replaced = `a call timed out after ${job.timeoutMs} ms`;
    } else if (o.kind === "cancelled") {
      replaced = "a call was cancelled";
    } else if (o.kind === "died") {
      counters.crashes++;
      replaced = o.reason ? `a protocol error (${o.reason})` : `the interpreter ${describeExit(o.code, o.signal)}`;
    } else if (o.result.memoryError) {
      // The MemoryError may have left huge objects in some session's globals: start clean.
      replaced = "a MemoryError";
    }
    if (replaced && slot.proc === proc) {
      replace(slot, replaced);
      respawn(slot);
      // This call's result says the state was reset; its next call need not say it again.
      if (job.sessionId !== undefined) table.clearTombstone(job.sessionId);
    } else if (slot.proc === proc) {
      slot.state = "idle";
      slot.startFailures = 0; // it served a call: whatever failed before is over
    }
    const priorReset = job.resetReason;
    if (o.kind === "cancelled") {
      job.reject(cancelledError());
      return dispatch();
    }
    job.resolve(toResult(o, { timeoutMs: job.timeoutMs, durationMs, queuedMs, interpreter: slot.index, priorReset, replaced }));
    dispatch();
  }

  function dispatch(): void {
    // Calls pinned to an interpreter first: nothing else can serve them.
    for (const slot of slots) {
      if (slot.state !== "idle") continue;
      const job = slot.queue.shift();
      if (!job) continue;
      queued--;
      start(slot, job);
    }
    // Then the shared queue in order, each call on the best idle interpreter for it; a new
    // session that should wait for a starting interpreter does not hold up the calls behind it.
    for (let i = 0; i < shared.length && slots.some((s) => s.state === "idle"); ) {
      const slot = pickIdle(shared[i]!);
      if (!slot) {
        i++;
        continue;
      }
      const job = shared.splice(i, 1)[0]!;
      queued--;
      start(slot, job);
    }
  }

  const closedError = () => new ClosedError("the python executor is closed");

  // One call at a time per session, in arrival order: state changes apply in order, and a
  // session never needs two interpreters.
  async function inSession(code: string, sessionId: string, timeoutMs: number, call: CallContext | undefined): Promise<ExecutionResult> {
    const prev = tails.get(sessionId);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    tails.set(sessionId, mine);
    try {
      if (prev) {
        if (queued >= opts.maxPending) throw overloaded();
        queued++;
        try {
          await prev;
        } finally {
          queued--;
        }
        if (closed) throw closedError();
      }
      return await submit(code, sessionId, timeoutMs, call);
    } finally {
      release();
      if (tails.get(sessionId) === mine) tails.delete(sessionId);
    }
  }

  const pool: ExecutorPool = {
    get closed() {
      return closed;
    },
    // Not an async function: a stateless call's result reaches its caller with no promise in
    // between (the session path keeps its async wrapper: measured, it is no slower).
    execute(code, options) {
      if (closed) return Promise.reject(closedError());
      if (typeof code !== "string") return Promise.reject(new TypeError(`code must be a string (got ${typeof code})`));
      let sessionId: string | undefined;
      let timeoutMs: number;
      try {
        ({ sessionId, timeoutMs } = parseExecuteOptions(options, opts));
      } catch (err) {
        return Promise.reject(err as Error);
      }
      if (fatal ?? broken) return Promise.reject(fatal ?? broken);
      // Served as a call (the registry, a service): the caller's cancel or deadline kills the
      // execution, as a timeout does.
      const call = activeCall();
      if (sessionId === undefined) return submit(code, undefined, timeoutMs, call);
      return inSession(code, sessionId, timeoutMs, call);
    },
    reset(sessionId) {
      if (typeof sessionId !== "string") throw new TypeError("reset(sessionId) needs the session id string");
      table.clearTombstone(sessionId);
      const rec = table.get(sessionId);
      if (!rec) return false;
      rec.slot.drop.push(rec.key);
      table.remove(rec);
      return true;
    },
    stats() {
      const alive = slots.filter((s) => s.state === "idle" || s.state === "busy").length;
      const startError = slots.find((s) => s.state === "down")?.lastStartError ?? fatal?.message;
      return {
        poolSize: opts.poolSize,
        alive,
        idle: slots.filter((s) => s.state === "idle").length,
        busy: slots.filter((s) => s.state === "busy").length,
        queued,
        sessions: table.size,
        executions: counters.executions,
        timeouts: counters.timeouts,
        crashes: counters.crashes,
        restarts: counters.restarts,
        evictions: table.evictions,
        sandbox: sandboxInfo(plan, opts),
        interpreters: slots.map((s) => ({
          index: s.index,
          state: s.state,
          pid: s.proc?.pid ?? null,
          uid: s.proc?.uid ?? null,
          sessions: table.countOn(s),
          executions: s.executions,
          restarts: s.restarts,
          rssBytes: s.proc?.alive ? (rssOf(s.proc.pid) ?? null) : null,
        })),
        ...(startError ? { startError } : {}),
      };
    },
    async ready() {
      await planned;
      if (fatal ?? broken) throw fatal ?? broken;
      if (closed) throw closedError();
      if (slots.every((s) => s.everReady)) return;
      await new Promise<void>((resolve, reject) => readyWaiters.push({ resolve, reject }));
    },
    close() {
      closing ??= (async () => {
        closed = true;
        const err = closedError();
        for (const w of readyWaiters.splice(0)) w.reject(err);
        rejectQueued(err);
        for (const slot of slots) {
          clearTimeout(slot.restartTimer);
          slot.state = "closed";
          retire(slot);
        }
        await planned.catch(() => {});
        // A spawn may have raced with close (plan resolved just now): retire again.
        for (const slot of slots) retire(slot);
        while (disposals.size) await Promise.all([...disposals]);
        if (poolDir) rmSync(poolDir, { recursive: true, force: true, maxRetries: 3 });
      })();
      return closing;
    },
  };
  return pool;
}
