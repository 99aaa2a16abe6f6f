import { createDeadlines, type Deadlines } from "../connection/index.ts";
import { CallTimeoutError, OverloadedError } from "../errors/index.ts";
import { InferenceShutdownError, SHUTTING_DOWN_MESSAGE } from "./errors.ts";
import { RequestBuffer, type BufferedItem } from "./buffer.ts";
import { defineOptions, durationMs, int, type SpecFor } from "../options/index.ts";
import { cancelledError, submitSignal, submitTimeoutMs, TRANSPORT_DEFAULTS } from "./options.ts";
import { clientOf, type Drained, type InferenceClient, type InferenceTransport, type SubmitOptions } from "./transport.ts";

export interface InProcessTransportOptions {
  /** Default deadline of a call (ms). */
  timeoutMs?: number;
  /** Requests queued beyond this are refused at once with a retryable OverloadedError. */
  maxBuffered?: number;
}

const inProcessOptions = defineOptions(
  "InProcessTransport options",
  {
    timeoutMs: durationMs({ min: 1, hint: "the default deadline of a call" }),
    maxBuffered: int({ min: 1, hint: "bound on queued requests" }),
  } satisfies SpecFor<InProcessTransportOptions>,
  { timeoutMs: TRANSPORT_DEFAULTS.timeoutMs, maxBuffered: TRANSPORT_DEFAULTS.maxBuffered },
  { example: "{ timeoutMs: 5000 }" },
);

interface Pending<I, O> extends BufferedItem<I> {
  resolve(v: O): void;
  reject(e: unknown): void;
  settled: boolean;
  timeoutMs: number;
  /** Removes the signal listener once the call settles. */
  forget?: () => void;
}

/**
 * Clients and server in one process (TorchRL's ThreadingTransport). Inputs and results are
 * passed by reference, never encoded or copied: a model may keep views into its inputs, and
 * callers must not mutate an input until its call settles.
 */
export class InProcessTransport<I = unknown, O = unknown> implements InferenceTransport<I, O> {
  private readonly buffer = new RequestBuffer<Pending<I, O>>();
  private readonly deadlines: Deadlines<Pending<I, O>>;
  private readonly timeoutMs: number;
  private readonly maxBuffered: number;
  private state: "idle" | "listening" | "stopped" = "idle";

  constructor(opts: InProcessTransportOptions = {}) {
    ({ timeoutMs: this.timeoutMs, maxBuffered: this.maxBuffered } = inProcessOptions.parse(opts));
    this.deadlines = createDeadlines((p) => {
      if (p.settled) return;
      p.settled = true;
      p.reject(new CallTimeoutError(`inference call timed out after ${p.timeoutMs} ms`, { details: { timeoutMs: p.timeoutMs } }));
    });
  }

  submit(input: I, opts?: SubmitOptions): Promise<O> {
    if (this.state === "stopped") {
      // Like NATS no-responders after the last server left: fail now, not at the deadline.
      return Promise.reject(new InferenceShutdownError(SHUTTING_DOWN_MESSAGE));
    }
    let timeoutMs: number;
    try {
      timeoutMs = submitTimeoutMs(opts, this.timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.buffer.size >= this.maxBuffered) {
      return Promise.reject(new OverloadedError(`inference queue is full (${this.maxBuffered} requests); back off and retry`, { details: { maxBuffered: this.maxBuffered } }));
    }
    const signal = submitSignal(opts);
    if (signal?.aborted) return Promise.reject(cancelledError());
    return new Promise<O>((resolve, reject) => {
      const now = performance.now();
      const p: Pending<I, O> = { input, resolve, reject, receivedAt: now, expiresAt: now + timeoutMs, settled: false, timeoutMs };
      this.deadlines.add(p, timeoutMs);
      if (signal) {
        const onAbort = () => {
          if (p.settled) return;
          // Still queued: it never reaches the model. In a batch already: its result is dropped.
          p.cancelled = true;
          this.resolveException(p, cancelledError());
        };
        signal.addEventListener("abort", onAbort, { once: true });
        p.forget = () => signal.removeEventListener("abort", onAbort);
      }
      this.buffer.push(p);
    });
  }

  /** Requests submitted before a server starts wait for it (TorchRL queues them too). */
  async listen(): Promise<void> {
    this.state = "listening";
  }

  async stopListening(): Promise<void> {
    if (this.state === "listening") this.state = "stopped";
  }

  drain(maxItems: number): Drained<I> {
    const items = this.buffer.take(maxItems);
    return { inputs: items.map((p) => p.input), callbacks: items, receivedAt: items.map((p) => p.receivedAt) };
  }

  waitForWork(timeoutMs: number): Promise<void> {
    return this.buffer.waitForWork(timeoutMs);
  }

  resolve(callback: unknown, result: O): void {
    const p = callback as Pending<I, O>;
    if (p.settled) return;
    p.settled = true;
    this.deadlines.delete(p, p.timeoutMs);
    p.forget?.();
    p.resolve(result);
  }

  resolveException(callback: unknown, error: unknown): void {
    const p = callback as Pending<I, O>;
    if (p.settled) return;
    p.settled = true;
    this.deadlines.delete(p, p.timeoutMs);
    p.forget?.();
    p.reject(error);
  }

  /** Requests waiting for the server loop to drain them. */
  get buffered(): number {
    return this.buffer.size;
  }

  get expired(): number {
    return this.buffer.expired;
  }

  client(): InferenceClient<I, O> {
    return clientOf(this);
  }
}
