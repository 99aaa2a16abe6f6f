import { constants } from "node:os";
import type { Outcome } from "./interpreter-process.ts";

/**
 * One execution's result: TorchRL's four fields (success, stdout, stderr, returncode) plus
 * timedOut and durationMs, and what a shared pool adds (truncation, state resets).
 */
export interface ExecutionResult {
  /** The code raised no exception (warnings on stderr do not count) and did not exit non-zero. */
  success: boolean;
  stdout: string;
  /** Warnings, and the traceback of a failure (e.g. "ValueError: Test error"). */
  stderr: string;
  /** 0 on success, 1 on an exception, the code of sys.exit/os._exit, -N for signal N, -1 on timeout. */
  returncode: number;
  timedOut: boolean;
  /** Wall-clock time of the execution itself, excluding the wait for an interpreter. */
  durationMs: number;
  /** Time spent waiting for an interpreter. */
  queuedMs: number;
  /** stdout or stderr went over maxOutputBytes and was cut. */
  truncated: boolean;
  /**
   * The session's earlier state is gone: its interpreter was replaced (timeout, crash, a
   * MemoryError, here or in another session sharing it) or the session was evicted.
   */
  stateReset: boolean;
  /** Why the state was reset, when it was. */
  resetReason?: string;
  /** Index of the interpreter that ran the code. */
  interpreter: number;
}

function appendLine(text: string, line: string): string {
  return text.length === 0 || text.endsWith("\n") ? `${text}${line}\n` : `${text}\n${line}\n`;
}

const SIGNAL_MEANING: Record<string, string> = {
  SIGSEGV: "segmentation fault",
  SIGBUS: "bus error",
  SIGABRT: "aborted",
  SIGFPE: "floating point exception",
  SIGXCPU: "CPU time limit exceeded",
  SIGXFSZ: "file size limit exceeded",
  SIGKILL: "killed",
};

export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `was killed by ${signal}${SIGNAL_MEANING[signal] ? ` (${SIGNAL_MEANING[signal]})` : ""}`;
  return `exited with code ${code ?? "?"}`;
}

export function returncodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (signal) return -((constants.signals as Record<string, number>)[signal] ?? 1);
  return code ?? -1;
}

export interface ResultContext {
  timeoutMs: number;
  durationMs: number;
  queuedMs: number;
  interpreter: number;
  /** Set when the state was already gone before this call ran. */
  priorReset?: string;
  /** Set when this call caused its interpreter (and so the session state) to be replaced. */
  replaced?: string;
}

export function toResult(o: Outcome, ctx: ResultContext): ExecutionResult {
  switch (o.kind) {
    case "ok": {
      const r = o.result;
      const stderr = ctx.replaced ? appendLine(r.stderr, `[the interpreter was replaced after ${ctx.replaced}; the session state was reset]`) : r.stderr;
      return result(ctx, r.ok, r.stdout, stderr, r.returncode, false, r.truncated);
    }
    case "cancelled": // the pool rejects these with CancelledError; kept for a complete record
    case "timeout": {
      const stderr = appendLine(o.stderr, `TimeoutError: execution timed out after ${ctx.timeoutMs} ms; the interpreter was killed and replaced, and the session state was reset`);
      return result(ctx, false, o.stdout, stderr, -1, true, o.truncated);
    }
    case "died": {
      const stderr = appendLine(
        o.stderr,
        `InterpreterCrashed: the interpreter ${o.reason ? `broke the protocol (${o.reason})` : describeExit(o.code, o.signal)} during execution; ` +
          `it was replaced and the session state was reset`,
      );
      return result(ctx, false, o.stdout, stderr, o.reason ? -1 : returncodeOf(o.code, o.signal), false, o.truncated);
    }
  }
}

// One literal, no object spread: this runs on every execution, and the spreads it replaced cost
// several microseconds a call.
function result(ctx: ResultContext, success: boolean, stdout: string, stderr: string, returncode: number, timedOut: boolean, truncated: boolean): ExecutionResult {
  const stateReset = Boolean(ctx.priorReset || ctx.replaced);
  const r: ExecutionResult = { success, stdout, stderr, returncode, timedOut, durationMs: ctx.durationMs, queuedMs: ctx.queuedMs, truncated, stateReset, interpreter: ctx.interpreter };
  if (stateReset) r.resetReason = ctx.replaced ?? ctx.priorReset;
  return r;
}
