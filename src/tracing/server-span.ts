import { context, ROOT_CONTEXT, SpanKind, trace, type Attributes, type Context, type Span, type Tracer } from "@opentelemetry/api";
import type { Codec } from "../codec/index.ts";
import { ATTR, callAttributes, endWithOutcome, failSpan, OK, replyOutcome, type TraceTarget } from "./attributes.ts";
import { traceHeadersOf, withRemoteParent, type TraceHeaders } from "./propagation.ts";

const now = () => performance.timeOrigin + performance.now();

/**
 * A host's span of one call, kind SERVER, from arrival to reply: a child span "queue" covers the
 * wait for a slot (or for a batch), and the method runs with this span as its active context,
 * so the spans and calls it makes hang under it. Made only while an SDK is registered.
 */
export class ServerSpan implements TraceHeaders {
  readonly traceparent: string;
  readonly tracestate: string;
  /** The active context inside the method. */
  readonly ctx: Context;
  private readonly arrived = now();
  private ended = false;

  constructor(
    private readonly tracer: Tracer,
    private readonly span: Span,
    private readonly codec: Codec,
  ) {
    this.ctx = trace.setSpan(ROOT_CONTEXT, span);
    const h = traceHeadersOf(span.spanContext());
    this.traceparent = h.traceparent;
    this.tracestate = h.tracestate;
  }

  /** The call leaves the queue and starts: the wait becomes a child span. */
  started(extra?: Attributes): void {
    const t = now();
    this.span.setAttribute(ATTR.queueMs, t - this.arrived);
    if (extra) this.span.setAttributes(extra);
    this.tracer.startSpan("queue", { kind: SpanKind.INTERNAL, startTime: this.arrived, attributes: extra }, this.ctx).end(t);
  }

  /** Runs `fn` with this span active (spans and calls made inside hang under it). */
  run<R>(fn: () => R): R {
    return context.with(this.ctx, fn);
  }

  /** The method threw (or its result could not be sent): the exception, status ERROR; ends the span. */
  fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    failSpan(this.span, err);
    this.span.end();
  }

  /** Ends the span with the outcome of the reply (OK when none is given: a stream that ended). */
  end(reply?: Uint8Array): void {
    if (this.ended) return;
    this.ended = true;
    endWithOutcome(this.span, reply ? replyOutcome(this.codec, reply) : OK);
  }

  /** Ends the span with an outcome code known without a reply (CANCELLED: nobody is answered). */
  endWith(code: string): void {
    if (this.ended) return;
    this.ended = true;
    endWithOutcome(this.span, code);
  }

  /**
   * A method's stream: each item is produced with this span active, and a generator that throws
   * marks the span failed (the host ends the stream itself either way).
   */
  followStream<T>(iterable: AsyncIterable<T>): AsyncIterable<T> {
    return {
      [Symbol.asyncIterator]: () => {
        const it = this.run(() => iterable[Symbol.asyncIterator]());
        return {
          next: () => this.run(() => it.next()).catch((err: unknown) => {
            this.fail(err);
            throw err;
          }),
          return: (value?: unknown) => (it.return ? this.run(() => it.return!(value as T)) : Promise.resolve({ value: value as T, done: true as const })),
        };
      },
    };
  }
}

/** The SERVER spans of one host (an actor instance, an inference server): resolved once. */
export interface ServerSpans {
  /** A span for a call that arrived with these headers, or undefined when tracing is off. */
  start(method: string, callId: string | undefined, headers: TraceHeaders): ServerSpan | undefined;
}

export function serverSpans(tracer: () => Tracer | undefined, target: TraceTarget, codec: Codec, extra?: Attributes): ServerSpans {
  return {
    start(method, callId, headers) {
      const t = tracer();
      if (!t) return undefined;
      const parent = withRemoteParent(ROOT_CONTEXT, headers.traceparent, headers.tracestate);
      const span = t.startSpan(`${target.service}/${method}`, { kind: SpanKind.SERVER, attributes: callAttributes(target, method, callId, extra) }, parent);
      return new ServerSpan(t, span, codec);
    },
  };
}
