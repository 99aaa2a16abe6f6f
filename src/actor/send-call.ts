import { CALL_HEADER, META_HEADER, MIN_VERSION_HEADER, ROLLING_HEADER, encodeCallHeader, encodeMinVersion, encodeRolling, type ResolvedRollingOptions } from "../call/index.ts";
import type { Transport } from "../connection/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { putTraceHeaders, type TraceHeaders } from "../tracing/index.ts";

/** One call as it leaves a process: everything the Ab-Call and Ab-Meta headers carry. */
export interface OutgoingCall {
  method: string;
  callId: string;
  /** Epoch ms on this host's clock; what is left of it travels. */
  deadline: number;
  /** The Ab-Meta header value, if any. */
  meta: string | undefined;
  signal: AbortSignal | undefined;
  /** The Ab-Min-Version header: the lowest replica version the call accepts (replicated services). */
  minVersion?: number | undefined;
  /** The Ab-Rolling header: a roll of the method over a replicated service's replicas, asked of its registry face. */
  rolling?: ResolvedRollingOptions | undefined;
  /** W3C trace context: the caller's span, or a relayed call's as it came (undefined: none). */
  trace?: TraceHeaders | undefined;
}

const utf8 = new TextEncoder();

/**
 * Sends one call (its arguments already encoded) and waits for the reply bytes. When the call's
 * signal aborts, the transport rejects it at once and the hosts of `subject` hear a cancel
 * carrying the call id, so the one holding it drops or aborts it.
 */
export function requestCall(transport: Transport, subjects: Subjects, subject: string, payload: Uint8Array, call: OutgoingCall): Promise<Uint8Array> {
  const timeoutMs = Math.max(1, call.deadline - Date.now());
  const headers: Record<string, string> = { [CALL_HEADER]: encodeCallHeader(timeoutMs, call.callId, call.method) };
  if (call.meta) headers[META_HEADER] = call.meta;
  if (call.minVersion !== undefined) headers[MIN_VERSION_HEADER] = encodeMinVersion(call.minVersion);
  if (call.rolling !== undefined) headers[ROLLING_HEADER] = encodeRolling(call.rolling);
  if (call.trace) putTraceHeaders(headers, call.trace);
  const signal = call.signal;
  const request = transport.request(subject, payload, timeoutMs, { headers, signal, coalesce: true });
  if (!signal || signal.aborted) return request;
  const tellHosts = () => transport.publish(subjects.cancel(subject), utf8.encode(call.callId));
  signal.addEventListener("abort", tellHosts, { once: true });
  const forget = () => signal.removeEventListener("abort", tellHosts);
  request.then(forget, forget);
  return request;
}
