import type { CallContext } from "../call/index.ts";
import type { Inbound } from "../connection/index.ts";
import type { ServerSpan } from "../tracing/index.ts";

/**
 * One call a host has accepted, from arrival to reply. It is the method's `currentCall()`:
 * the signal is made only when someone asks for it, so calls whose methods never look pay
 * nothing for cancellation beyond a map entry; abort listeners (addAbortListener) tell the same
 * without the signal's AbortController.
 */
export class HostedCall implements CallContext {
  settled = false;
  /** Cancelled before it ran: the queue skips it. */
  cancelled = false;
  started = false;
  /** A relayed call's Ab-Min-Version and Ab-Rolling headers ("" when absent or not relayed). */
  minVersionHeader = "";
  rollingHeader = "";
  /** The timeout its deadline was watched with once its signal was made (0: not watched). */
  watchedMs = 0;
  private controller: AbortController | undefined;
  private abortReason: Error | undefined;
  private watching = false;
  /** Abort listeners (addAbortListener): the first in a field, so that the usual one costs no array. */
  private listener: ((reason: Error) => void) | undefined;
  private listeners: ((reason: Error) => void)[] | undefined;
  /** Called by the host once the signal or an abort listener exists: the deadline then aborts the call too. */
  onSignal: ((call: HostedCall) => void) | undefined;
  /** The arguments came as a chunk ref (src/chunks): the host pulls them before the method runs. */
  chunked = false;
  /** The host's span of the call, while an OpenTelemetry SDK is registered. */
  trace: ServerSpan | undefined;

  constructor(
    readonly msg: Inbound,
    readonly callId: string,
    readonly method: string,
    readonly deadline: number,
    readonly metadata: Readonly<Record<string, string>>,
    /** The raw Ab-Meta header, relayed as is. */
    readonly metaHeader: string,
    /** Undefined for a relayed call, and until pulled for one whose arguments came in chunks. */
    public args: unknown[] | undefined,
    /** The caller's W3C trace context ("" when it sent none). */
    private readonly callerTraceparent = "",
    private readonly callerTracestate = "",
  ) {}

  /** The host's span when there is one, else the caller's context: what nested calls and relays carry on. */
  get traceparent(): string {
    return this.trace ? this.trace.traceparent : this.callerTraceparent;
  }

  get tracestate(): string {
    return this.trace ? this.trace.tracestate : this.callerTracestate;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
      else this.watch();
    }
    return this.controller.signal;
  }

  /** The first signal or abort listener has the host watch the deadline (once). */
  private watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.onSignal?.(this);
  }

  /** The signal's news without an AbortController: see CallContext.addAbortListener. */
  addAbortListener(listener: (reason: Error) => void): boolean {
    if (this.abortReason) return false;
    this.watch(); // may abort at once: the deadline has passed
    if (this.abortReason) return false;
    if (this.listener === undefined) this.listener = listener;
    else (this.listeners ??= []).push(listener);
    return true;
  }

  removeAbortListener(listener: (reason: Error) => void): void {
    if (this.listener === listener) this.listener = undefined;
    else if (this.listeners) {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    }
  }

  get signalled(): boolean {
    return this.controller !== undefined;
  }

  /**
   * A cheaper listener than the signal for code that only relays the call: told once, when the
   * call is aborted, without an AbortController being made.
   */
  onAbort: ((reason: Error) => void) | undefined;

  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    this.onAbort?.(reason);
    const first = this.listener;
    const rest = this.listeners;
    this.listener = this.listeners = undefined;
    if (first) tell(first, reason);
    if (rest) for (const l of rest) tell(l, reason);
  }
}

/** As an AbortSignal's listeners: one that throws is reported as uncaught and does not stop the others. */
function tell(listener: (reason: Error) => void, reason: Error): void {
  try {
    listener(reason);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
