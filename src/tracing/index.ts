export { tracerSource, TRACER_NAME } from "./enabled.ts";
export { TRACEPARENT, TRACESTATE, TRACE_HEADERS, formatTraceparent, parseTraceparent, putTraceHeaders, type TraceHeaders } from "./propagation.ts";
export { ATTR, type TraceTarget } from "./attributes.ts";
export { ClientSpan, clientSpan, endSpan } from "./client-span.ts";
export { ServerSpan, serverSpans, type ServerSpans } from "./server-span.ts";
export { withSpan } from "./internal-span.ts";
