import { context, SpanKind, trace, type Attributes, type Tracer } from "@opentelemetry/api";
import { ATTR, failSpan, OK } from "./attributes.ts";
import { parentContext } from "./propagation.ts";

/**
 * Runs `fn` under an INTERNAL span (an executor run inside the call that asked for it), with
 * attributes read from its result; `fn` alone when tracing is off.
 */
export function withSpan<T>(tracer: Tracer | undefined, name: string, attributes: Attributes | undefined, fn: () => Promise<T>, describe?: (result: T) => Attributes): Promise<T> {
  if (!tracer) return fn();
  const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parentContext());
  return context.with(trace.setSpan(context.active(), span), fn).then(
    (v) => {
      if (describe) span.setAttributes(describe(v));
      span.setAttribute(ATTR.outcome, OK);
      span.end();
      return v;
    },
    (err: unknown) => {
      failSpan(span, err);
      span.end();
      throw err;
    },
  );
}
