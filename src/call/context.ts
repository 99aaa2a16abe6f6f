import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What a method being served knows about its call (`currentCall()`): its deadline on this
 * host's clock, the caller's metadata, a signal that fires when the caller cancels or the
 * deadline passes, and an id that stays the same across relays (forwarder, controller, replica).
 */
export interface CallContext {
  readonly callId: string;
  readonly method: string;
  /** Epoch milliseconds on this host's clock; Infinity outside a call. */
  readonly deadline: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
  /**
   * What `signal` tells, for code that only needs to hear it: `listener` is called once, with
   * the reason, when the call is aborted (its caller cancels, its deadline passes, its host
   * stops). Cheaper than the signal: a host makes no AbortController and no timer for it.
   * Returns false, registering nothing, when the call is aborted already. Remove the listener
   * with removeAbortListener once the work it guards is over. Optional: a context made
   * elsewhere may only have `signal`.
   */
  addAbortListener?(listener: (reason: Error) => void): boolean;
  removeAbortListener?(listener: (reason: Error) => void): void;
  /**
   * W3C trace context of the host's span of this call (OpenTelemetry, when an SDK is registered
   * here), else as the caller sent it; "" when there is none. For propagating the trace to
   * systems actorbus does not reach; calls through handles carry it by themselves.
   */
  readonly traceparent: string;
  readonly tracestate: string;
}

// The one process-wide slot of the library: like OpenTelemetry's context, the context of "the
// call this code runs for" belongs to the async flow, not to any object the method can reach.
const store = new AsyncLocalStorage<CallContext>();

const NEVER = new AbortController().signal;
const OUTSIDE: CallContext = Object.freeze({
  callId: "",
  method: "",
  deadline: Infinity,
  metadata: Object.freeze({}),
  signal: NEVER,
  traceparent: "",
  tracestate: "",
  addAbortListener: () => true, // never aborted: the listener is never called
  removeAbortListener: () => {},
});

/**
 * The context of the call being served, inside any method of any hosted class (and whatever
 * it awaits). Outside a call: no deadline, no metadata, a signal that never fires.
 */
export function currentCall(): CallContext {
  return store.getStore() ?? OUTSIDE;
}

/** The served call's context if there is one: nested calls inherit its deadline and signal. */
export function activeCall(): CallContext | undefined {
  return store.getStore();
}

export function runInCall<R>(ctx: CallContext, fn: () => R): R {
  return store.run(ctx, fn);
}
