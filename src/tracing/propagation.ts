import { context, createTraceState, isSpanContextValid, trace, type Context, type SpanContext } from "@opentelemetry/api";
import { activeCall } from "../call/index.ts";

/**
 * W3C trace context in NATS headers, written and read here rather than through the API's global
 * propagator: an application that registers an SDK but no propagator still gets one trace across
 * processes, and relays copy the two header strings without parsing them.
 */
export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";
/** The names a host reads from a call's header block (headersOf). */
export const TRACE_HEADERS = [TRACEPARENT, TRACESTATE] as const;

/** The trace context one call carries: a span's (or a relayed call's, copied as is). */
export interface TraceHeaders {
  readonly traceparent: string;
  readonly tracestate: string;
}

const TRACEPARENT_FORMAT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** The remote span context of the headers, or undefined when they carry none (or garbage). */
export function parseTraceparent(traceparent: string, tracestate: string): SpanContext | undefined {
  const m = TRACEPARENT_FORMAT.exec(traceparent);
  // Version ff is forbidden; version 00 has no trailing fields; later versions may add some.
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return undefined;
  const sc: SpanContext = { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16), isRemote: true };
  if (!isSpanContextValid(sc)) return undefined;
  if (tracestate) {
    try {
      sc.traceState = createTraceState(tracestate);
    } catch {
      // a malformed tracestate is dropped, the trace goes on (W3C: vendors' keys are optional)
    }
  }
  return sc;
}

/** `base` with the headers' span as its (remote) parent, or `base` when they carry none. */
export function withRemoteParent(base: Context, traceparent: string, tracestate: string): Context {
  const sc = traceparent ? parseTraceparent(traceparent, tracestate) : undefined;
  return sc ? trace.setSpanContext(base, sc) : base;
}

/** The header strings of a span, for the calls made under it. */
export function traceHeadersOf(sc: SpanContext): TraceHeaders {
  return { traceparent: formatTraceparent(sc), tracestate: sc.traceState?.serialize() ?? "" };
}

/**
 * Where an outgoing call's span hangs: the application's active span if it has one, else the
 * call being served here (`currentCall()`), whose server span an application without a context
 * manager would otherwise lose.
 */
export function parentContext(): Context {
  const ctx = context.active();
  if (trace.getSpan(ctx)) return ctx;
  const served = activeCall();
  return served?.traceparent ? withRemoteParent(ctx, served.traceparent, served.tracestate) : ctx;
}

/** Adds a call's trace context to its NATS headers (nothing when it has none). */
export function putTraceHeaders(headers: Record<string, string>, t: TraceHeaders): void {
  if (!t.traceparent) return;
  headers[TRACEPARENT] = t.traceparent;
  if (t.tracestate) headers[TRACESTATE] = t.tracestate;
}
