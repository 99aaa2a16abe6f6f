import { InvalidOptionsError } from "../errors/index.ts";
import { InferenceServerStateError, InferenceShutdownError, ResultCountError, SHUTTING_DOWN_MESSAGE } from "./errors.ts";
import { bool, defineOptions, durationMs, fn, int, type SpecFor } from "../options/index.ts";
import { StatsRecorder, type InferenceServerStats } from "./stats.ts";
import { stack, unstack, type TensorBatch, type TensorBatchLike, type TensorRecord } from "./tensor-records.ts";
import type { InferenceClient, InferenceTransport } from "./transport.ts";

export type InferenceModel<B, R> = (batch: B) => R | Promise<R>;

export interface InferenceServerOptions<I, O, B, R> {
  /** Most requests per model call. Default 64. */
  maxBatchSize?: number;
  /** Fewest requests per model call, waited for at most `timeoutMs` after the first. Default 1. */
  minBatchSize?: number;
  /** How long the loop waits for work, and for `minBatchSize` to fill. Default 10 ms. */
  timeoutMs?: number;
  /**
   * Items -> model input. Default `stack` (tensor records -> one array per key). A batch it
   * throws on is halved until the inputs it cannot take stand alone; only their callers fail.
   */
  collate?: (items: I[]) => B;
  /** Model output -> one result per item. Default: an array as is, else `unstack`. */
  split?: (output: R, batchSize: number) => O[];
  /** Samples kept for the percentiles of `stats()`. Default 1024. */
  statsWindow?: number;
  /** How long `shutdown()` lets a running model call finish before failing its callers. Default 5000 ms. */
  shutdownTimeoutMs?: number;
}

export interface ShutdownOptions {
  timeoutMs?: number;
}

const serverOptions = defineOptions(
  "InferenceServer options",
  {
    maxBatchSize: int({ min: 1, hint: "1 disables batching" }),
    minBatchSize: int({ min: 1, hint: "1 runs as soon as anything arrives" }),
    timeoutMs: durationMs({ min: 0, hint: "how long to wait for a batch to fill" }),
    collate: fn("it turns the list of inputs into the model's input"),
    split: fn("it turns the model's output into one result per input"),
    statsWindow: int({ min: 1, hint: "samples kept for percentiles" }),
    shutdownTimeoutMs: durationMs({ min: 0, hint: "how long a running batch may take on shutdown" }),
  } satisfies SpecFor<InferenceServerOptions<unknown, unknown, unknown, unknown>>,
  { maxBatchSize: 64, minBatchSize: 1, timeoutMs: 10, statsWindow: 1024, shutdownTimeoutMs: 5_000 },
  { example: "{ maxBatchSize: 64 }" },
);

const statsOptions = defineOptions("stats options", { reset: bool() }, { reset: false }, { example: "{ reset: true }" });

const shutdownOptions = defineOptions(
  "shutdown options",
  { timeoutMs: durationMs({ min: 0, hint: "how long a running batch may take before its callers fail" }) } satisfies SpecFor<ShutdownOptions>,
  {},
  { example: "{ timeoutMs: 1_000 }" },
);

/** `collate: (items) => items` with a model returning per-item results must work unchanged. */
function defaultSplit(output: unknown): unknown[] {
  return Array.isArray(output) ? output : unstack(output as TensorBatchLike);
}

/**
 * TorchRL's auto-batching loop over any InferenceTransport: wait for work, drain up to
 * maxBatchSize, top up to minBatchSize for at most timeoutMs, collate, call the model once,
 * split, answer each caller. One batch runs at a time, so a model never sees concurrent calls.
 */
export class InferenceServer<I = TensorRecord, O = TensorRecord, B = TensorBatch, R = unknown> implements AsyncDisposable {
  readonly maxBatchSize: number;
  readonly minBatchSize: number;
  readonly timeoutMs: number;
  private readonly collate: (items: I[]) => B;
  private readonly split: (output: R, batchSize: number) => O[];
  private readonly shutdownTimeoutMs: number;
  private readonly recorder: StatsRecorder;
  private expiredAtReset = 0;

  private loop: Promise<void> | undefined;
  private listening: Promise<void> | undefined;
  private shuttingDown: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private inFlight: unknown[] | undefined;
  /** Why the loop stopped on its own, if it did. */
  loopError: unknown;

  constructor(
    private readonly model: InferenceModel<B, R>,
    readonly transport: InferenceTransport<I, O>,
    opts: InferenceServerOptions<I, O, B, R> = {},
  ) {
    const where = "InferenceServer options";
    if (typeof model !== "function") throw new InvalidOptionsError("InferenceServer needs a model function: new InferenceServer(async (batch) => output, transport)");
    if (transport === null || typeof transport !== "object" || typeof transport.drain !== "function") {
      throw new InvalidOptionsError("InferenceServer needs a transport: new NatsTransport({ connection, namespace, name }) or new InProcessTransport()");
    }
    const o = serverOptions.parse(opts);
    this.maxBatchSize = o.maxBatchSize;
    this.minBatchSize = o.minBatchSize;
    if (this.minBatchSize > this.maxBatchSize) {
      throw new InvalidOptionsError(`${where}: minBatchSize (${this.minBatchSize}) exceeds maxBatchSize (${this.maxBatchSize}); lower minBatchSize or raise maxBatchSize`);
    }
    this.timeoutMs = o.timeoutMs;
    this.shutdownTimeoutMs = o.shutdownTimeoutMs;
    this.collate = (o.collate as ((items: I[]) => B) | undefined) ?? (stack as unknown as (items: I[]) => B);
    this.split = (o.split as ((output: R, n: number) => O[]) | undefined) ?? (defaultSplit as unknown as (output: R, n: number) => O[]);
    this.recorder = new StatsRecorder(o.statsWindow);
  }

  /** Starts the loop (and the transport's listening). Returns this, for `server.start()` chaining. */
  start(): this {
    if (this.shuttingDown) throw new InferenceServerStateError("InferenceServer was shut down; create a new one to serve again.");
    if (this.loop) throw new InferenceServerStateError("Server is already running.");
    // listen() subscribes before its first await, so calling it now (not a microtask later)
    // puts the SUB ahead of any request this connection sends after start(): NATS keeps one
    // connection's protocol in order, so same-connection clients need no ready().
    let listening: Promise<void>;
    try {
      listening = Promise.resolve(this.transport.listen?.());
    } catch (err) {
      listening = Promise.reject(err);
    }
    this.listening = listening;
    this.loop = listening.then(
      () => this.run(),
      () => {}, // reported through ready(); the loop never runs
    );
    return this;
  }

  /**
   * Resolves once requests from any connection can reach the server (the NATS subscription is
   * registered on the server). Clients on the server's own connection need not wait for it.
   */
  async ready(): Promise<void> {
    if (!this.listening) throw new InferenceServerStateError("InferenceServer is not started; call start() first.");
    await this.listening;
  }

  get isRunning(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  client(): InferenceClient<I, O> {
    return this.transport.client();
  }

  stats(opts: { reset?: boolean } = {}): InferenceServerStats {
    const { reset } = statsOptions.parse(opts);
    const expired = this.transport.expired ?? 0;
    const s = this.recorder.snapshot(expired - this.expiredAtReset);
    if (reset) {
      this.recorder.reset();
      this.expiredAtReset = expired;
    }
    return s;
  }

  /**
   * Stops taking requests, lets a running batch finish (up to shutdownTimeoutMs, after which its
   * callers get the shutdown error), then rejects everything still queued with
   * "InferenceServer is shutting down.". Idempotent.
   */
  shutdown(opts: ShutdownOptions = {}): Promise<void> {
    let timeoutMs: number;
    try {
      timeoutMs = shutdownOptions.parse(opts).timeoutMs ?? this.shutdownTimeoutMs;
    } catch (err) {
      return Promise.reject(err);
    }
    this.shuttingDown ??= this.stop(timeoutMs);
    return this.shuttingDown;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  private async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    if (!this.loop) return;
    this.wake?.();
    const err = () => new InferenceShutdownError(SHUTTING_DOWN_MESSAGE);
    // Stop the inflow first, concurrently with the batch: with several servers of one name,
    // new requests go to the others while this one finishes.
    const stopped = (this.listening ?? Promise.resolve()).then(() => this.transport.stopListening?.()).catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      this.loop.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (!finished && this.inFlight) {
      // The model is still running: its callers hear now; its late results are ignored.
      for (const cb of this.inFlight) this.transport.resolveException(cb, err());
    }
    await stopped;
    for (;;) {
      const { callbacks } = this.transport.drain(this.maxBatchSize);
      if (callbacks.length === 0) break;
      for (const cb of callbacks) this.transport.resolveException(cb, err());
    }
  }

  /** Waits for work, but returns at once when shutdown starts. */
  private waitForWork(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.transport.waitForWork(timeoutMs).then(resolve, resolve);
    });
  }

  private async run(): Promise<void> {
    try {
      await this.serve();
    } catch (err) {
      // A transport failure, not a model one (those stay inside their batch): stop serving and
      // tell everyone queued why, rather than leaving them to their deadlines.
      this.stopping = true;
      this.loopError = err;
      if (this.inFlight) for (const cb of this.inFlight) this.transport.resolveException(cb, err);
      for (;;) {
        const { callbacks } = this.transport.drain(this.maxBatchSize);
        if (callbacks.length === 0) break;
        for (const cb of callbacks) this.transport.resolveException(cb, err);
      }
    }
  }

  private async serve(): Promise<void> {
    const t = this.transport;
    while (!this.stopping) {
      await this.waitForWork(this.timeoutMs);
      if (this.stopping) break;
      const first = t.drain(this.maxBatchSize);
      if (first.inputs.length === 0) continue;
      const inputs = first.inputs.slice();
      const callbacks = first.callbacks.slice();
      const receivedAt = first.receivedAt?.slice() ?? [];
      if (inputs.length < this.minBatchSize) {
        const deadline = performance.now() + this.timeoutMs;
        while (inputs.length < this.minBatchSize && !this.stopping) {
          const remaining = deadline - performance.now();
          if (remaining <= 0) break;
          await this.waitForWork(remaining);
          const more = t.drain(this.maxBatchSize - inputs.length);
          inputs.push(...more.inputs);
          callbacks.push(...more.callbacks);
          if (more.receivedAt) receivedAt.push(...more.receivedAt);
        }
      }
      this.inFlight = callbacks;
      await this.runBatch(inputs, callbacks, receivedAt);
      this.inFlight = undefined;
    }
  }

  private async runBatch(inputs: I[], callbacks: unknown[], receivedAt: number[]): Promise<void> {
    const t = this.transport;
    const n = callbacks.length;
    let batch: B;
    try {
      batch = this.collate(inputs);
    } catch (err) {
      if (n > 1) {
        // One malformed input (a buggy or hostile client) must not fail the requests batched
        // with it: halve until the inputs that cannot be collated stand alone.
        const mid = n >> 1;
        await this.runBatch(inputs.slice(0, mid), callbacks.slice(0, mid), receivedAt.slice(0, mid));
        await this.runBatch(inputs.slice(mid), callbacks.slice(mid), receivedAt.slice(mid));
        return;
      }
      this.recorder.failedBatch();
      for (const cb of callbacks) t.resolveException(cb, err);
      return;
    }
    try {
      const start = performance.now();
      const output = await this.model(batch);
      const modelMs = performance.now() - start;
      this.recorder.batch(n, receivedAt.map((r) => start - r), modelMs);
      const results = this.split(output, n);
      if (!Array.isArray(results)) {
        throw new ResultCountError(`split returned ${typeof results}, not an array of results for a batch of ${n} inputs.`, { details: { batchSize: n } });
      }
      if (results.length !== n) {
        throw new ResultCountError(`Model returned ${results.length} results for a batch of ${n} inputs.`, { details: { results: results.length, batchSize: n } });
      }
      for (let i = 0; i < n; i++) t.resolve(callbacks[i], results[i]!);
    } catch (err) {
      this.recorder.failedBatch();
      for (const cb of callbacks) t.resolveException(cb, err);
    }
  }
}
