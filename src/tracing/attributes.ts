import { SpanStatusCode, type Attributes, type Span } from "@opentelemetry/api";
import type { Codec } from "../codec/index.ts";
import { ActorBusError } from "../errors/index.ts";

/**
 * Attribute names: OpenTelemetry's semantic conventions for RPC and messaging where they fit,
 * actorbus' own under `actorbus.`.
 */
export const ATTR = {
  rpcSystem: "rpc.system",
  rpcService: "rpc.service",
  rpcMethod: "rpc.method",
  messagingSystem: "messaging.system",
  destination: "messaging.destination.name",
  namespace: "actorbus.namespace",
  callId: "actorbus.call_id",
  instance: "actorbus.instance",
  replica: "actorbus.replica",
  attempt: "actorbus.attempt",
  outcome: "actorbus.outcome",
  relay: "actorbus.relay",
  stream: "actorbus.stream",
  queueMs: "actorbus.queue_ms",
  batchSize: "actorbus.batch_size",
} as const;

export const RPC_SYSTEM = "actorbus";
export const OK = "OK";

/** Who a span is about: a service (or inference server) of a namespace, and its subject. */
export interface TraceTarget {
  namespace: string;
  service: string;
  subject: string;
}

/** The attributes every span of a call has, client or server side. */
export function callAttributes(t: TraceTarget, method: string, callId: string | undefined, extra?: Attributes): Attributes {
  const a: Attributes = {
    [ATTR.rpcSystem]: RPC_SYSTEM,
    [ATTR.rpcService]: t.service,
    [ATTR.rpcMethod]: method,
    [ATTR.messagingSystem]: "nats",
    [ATTR.destination]: t.subject,
    [ATTR.namespace]: t.namespace,
  };
  if (callId) a[ATTR.callId] = callId;
  return extra ? Object.assign(a, extra) : a;
}

/** The outcome code of an error: the library's code, REMOTE for whatever a method threw. */
export function outcomeOf(err: unknown): string {
  return err instanceof ActorBusError ? err.code : "REMOTE";
}

/** The outcome code of an encoded reply ([0, value], [1, WireError] or a stream opening). */
export function replyOutcome(codec: Codec, bytes: Uint8Array): string {
  // msgpack's fixarray of two: 0x92, then the tag; only failures are decoded.
  if (bytes[1] !== 1) return OK;
  try {
    const code = codec.decode<[1, { code?: unknown }]>(bytes)[1]?.code;
    return typeof code === "string" ? code : "REMOTE";
  } catch {
    return "REMOTE";
  }
}

/** Marks a span failed: the exception as an event, status ERROR, the outcome code. */
export function failSpan(span: Span, err: unknown, code = outcomeOf(err)): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.setAttribute(ATTR.outcome, code);
}

/** Ends a span with the outcome a reply says (error status for failures, without an exception at hand). */
export function endWithOutcome(span: Span, code: string): void {
  span.setAttribute(ATTR.outcome, code);
  if (code !== OK) span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  span.end();
}
