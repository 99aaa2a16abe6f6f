import { SpanKind, type Span, type Tracer } from "@opentelemetry/api";
import type { Codec } from "../codec/index.ts";
import { ATTR, callAttributes, endWithOutcome, failSpan, OK, replyOutcome, type TraceTarget } from "./attributes.ts";
import { parentContext, traceHeadersOf, type TraceHeaders } from "./propagation.ts";

/**
 * The caller's span of one call (or of one attempt of a routed call): kind CLIENT, its context
 * in the call's headers, ended with the call's outcome. Made only while an SDK is registered.
 */
export class ClientSpan implements TraceHeaders {
  readonly traceparent: string;
  readonly tracestate: string;
  private ended = false;

  constructor(private readonly span: Span) {
    const h = traceHeadersOf(span.spanContext());
    this.traceparent = h.traceparent;
    this.tracestate = h.tracestate;
  }

  end(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    if (err === undefined) return endWithOutcome(this.span, OK);
    failSpan(this.span, err);
    this.span.end();
  }

  /**
   * Ends the span when `p` settles. A stream ends it at its last item (or its failure); relayed
   * reply bytes (`codec` given) are read for a failure without being decoded otherwise.
   */
  watch<T>(p: Promise<T>, codec?: Codec): Promise<T> {
    return p.then(
      (v) => {
        if (codec && v instanceof Uint8Array) {
          const code = replyOutcome(codec, v);
          if (code === OK) this.end();
          else {
            this.ended = true;
            endWithOutcome(this.span, code);
          }
          return v;
        }
        if (isIterator(v)) {
          this.span.setAttribute(ATTR.stream, true);
          return this.followStream(v) as T;
        }
        this.end();
        return v;
      },
      (err: unknown) => {
        this.end(err);
        throw err;
      },
    );
  }

  private followStream(it: AsyncIterableIterator<unknown>): AsyncIterableIterator<unknown> {
    const wrapped: AsyncIterableIterator<unknown> = {
      next: () =>
        it.next().then(
          (r) => {
            if (r.done) this.end();
            return r;
          },
          (err: unknown) => {
            this.end(err);
            throw err;
          },
        ),
      return: (value?: unknown) => {
        this.end();
        return it.return ? it.return(value) : Promise.resolve({ value, done: true });
      },
      [Symbol.asyncIterator]: () => wrapped,
    };
    return wrapped;
  }
}

function isIterator(v: unknown): v is AsyncIterableIterator<unknown> {
  return typeof v === "object" && v !== null && typeof (v as AsyncIterableIterator<unknown>).next === "function" && Symbol.asyncIterator in v;
}

/**
 * Starts a CLIENT span under the caller's active context (or the call being served here), or
 * returns undefined at the cost of the check when no SDK is registered. A routed call's attempt
 * says which try it is and which replica it went to.
 */
export function clientSpan(tracer: () => Tracer | undefined, target: TraceTarget, method: string, callId: string | undefined, attempt?: number, replica?: number): ClientSpan | undefined {
  const t = tracer();
  if (!t) return undefined;
  const attributes = callAttributes(target, method, callId);
  if (attempt !== undefined) attributes[ATTR.attempt] = attempt;
  if (replica !== undefined) attributes[ATTR.replica] = replica;
  return new ClientSpan(t.startSpan(`${target.service}/${method}`, { kind: SpanKind.CLIENT, attributes }, parentContext()));
}

/** `p`, ending the span when it settles; `p` itself when there is no span (tracing off). */
export function endSpan<T>(span: ClientSpan | undefined, p: Promise<T>, codec?: Codec): Promise<T> {
  return span ? span.watch(p, codec) : p;
}
