import { InvalidOptionsError } from "../errors/index.ts";
import { InferenceServerStateError, InferenceShutdownError, ResultCountError, SHUTTING_DOWN_MESSAGE } from "./errors.ts";
import { bool, custom, defineOptions, durationMs, fn, int, obj, str, type SpecFor } from "../options/index.ts";
import { StatsRecorder, type InferenceHistograms, type InferenceServerStats } from "./stats.ts";
import { stack, unstack, type TensorBatch, type TensorBatchLike, type TensorRecord } from "./tensor-records.ts";
import type { InferenceClient, InferenceTransport } from "./transport.ts";
import { ModelGate, versionKeyCheck, weightSyncFailure, withVersion, type UpdateModelOptions, type WeightSyncReceiver } from "./weights.ts";

export type InferenceModel<B, R> = (batch: B) => R | Promise<R>;

export interface InferenceServerOptions<I, O, B, R> {
  /** Most requests per model call. Default 64. */
  maxBatchSize?: number;
  /** Fewest requests per model call, waited for at most `timeoutMs` after the first. Default 1. */
  minBatchSize?: number;
  /** How long the loop waits for work, and for `minBatchSize` to fill. Default 10 ms. */
  timeoutMs?: number;
  /**
   * After a batch is answered, how long the loop may wait for its callers to send again when
   * fewer requests are queued than that batch had. Closed-loop callers (an actor that acts,
   * awaits its action, acts again) otherwise split into two groups that take turns, each batch
   * half full. The wait ends as soon as the batch is as large as the last one plus what was
   * queued (at most maxBatchSize), and never delays a request after an idle spell. Worth it
   * when callers answer faster than the model runs; set it near their round trip. Default 0:
   * whatever is queued runs at once.
   */
  gatherMs?: number;
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
  /** The behaviour-policy version results are tagged with until the first update. Default 0. */
  policyVersion?: number;
  /**
   * Where each result gets the version: a key, a dotted key path ("info.policyVersion", missing
   * records on the way are created) or an array of keys; null: results are not tagged. Only
   * plain-object results are tagged (as copies); anything else (numbers, arrays, class
   * instances, a path running into a typed array) is passed on untouched. Default "policyVersion".
   */
  policyVersionKey?: string | readonly string[] | null;
  /**
   * A receiver of weights from a trainer: initialised (`initOnReceiver`) and connected at
   * `start()`, before the first batch; polled (`receive()`) before every batch. Weights it
   * returns are applied between batches and bump `policyVersion`.
   */
  weightSync?: WeightSyncReceiver<InferenceModel<B, R>>;
  /** The `modelId` given to `weightSync.initOnReceiver`. Default "policy" (TorchRL's default). */
  weightSyncModelId?: string;
  /**
   * Applies what `weightSync.receive()` returned to the model. Leave it out when the receiver
   * applies the weights itself (as TorchRL's schemes do with the model from `initOnReceiver`);
   * give it when the model is a closure the receiver cannot reach into. Make it all-or-nothing
   * (build the new arrays, then swap them in): if it throws, the model keeps what it did.
   */
  applyWeights?: (model: InferenceModel<B, R>, weights: unknown) => void | Promise<void>;
}

export interface ShutdownOptions {
  timeoutMs?: number;
}

/** A version survives msgpack and arithmetic exactly only as a safe integer. */
const versionCheck = custom<number>((v) => Number.isSafeInteger(v) && (v as number) >= 0, "an integer >= 0 (a number, not a string)", "it counts weight updates, from 0 by default");

const serverOptions = defineOptions(
  "InferenceServer options",
  {
    maxBatchSize: int({ min: 1, hint: "1 disables batching" }),
    minBatchSize: int({ min: 1, hint: "1 runs as soon as anything arrives" }),
    timeoutMs: durationMs({ min: 0, hint: "how long to wait for a batch to fill" }),
    gatherMs: durationMs({ min: 0, hint: "how long to wait for the last batch's callers to come back; 0 disables" }),
    collate: fn("it turns the list of inputs into the model's input"),
    split: fn("it turns the model's output into one result per input"),
    statsWindow: int({ min: 1, hint: "samples kept for percentiles" }),
    shutdownTimeoutMs: durationMs({ min: 0, hint: "how long a running batch may take on shutdown" }),
    policyVersion: versionCheck,
    policyVersionKey: versionKeyCheck,
    weightSync: obj<WeightSyncReceiver<any>>("a weight-sync receiver, such as one built for your trainer's sender", ["initOnReceiver", "connect", "receive"]),
    weightSyncModelId: str({ nonEmpty: true, hint: "the model id the weight-sync receiver registers the model under" }),
    applyWeights: fn("it applies the weights weightSync.receive() returned: (model, weights) => ..."),
  } satisfies SpecFor<InferenceServerOptions<unknown, unknown, unknown, unknown>>,
  { maxBatchSize: 64, minBatchSize: 1, timeoutMs: 10, gatherMs: 0, statsWindow: 1024, shutdownTimeoutMs: 5_000, policyVersion: 0, policyVersionKey: ["policyVersion"], weightSyncModelId: "policy" },
  { example: "{ maxBatchSize: 64 }" },
);

const updateModelOptions = defineOptions(
  "updateModel options",
  { markWeightUpdate: bool("false applies fn without bumping policyVersion") } satisfies SpecFor<UpdateModelOptions>,
  { markWeightUpdate: true },
  { example: "{ markWeightUpdate: false }" },
);

const countCheck = int({ min: 0, hint: "how many clients to make" });

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
  private readonly gatherMs: number;
  /** Size of the batch last answered and when (performance.now()): who may be about to come back. */
  private lastBatchSize = 0;
  private lastAnsweredAt = 0;
  private readonly collate: (items: I[]) => B;
  private readonly split: (output: R, batchSize: number) => O[];
  private readonly shutdownTimeoutMs: number;
  private readonly recorder: StatsRecorder;
  private expiredAtReset = 0;
  private version: number;
  private readonly versionPath: readonly string[] | null;
  private readonly weightSync: WeightSyncReceiver<InferenceModel<B, R>> | undefined;
  private readonly weightSyncModelId: string;
  private readonly applyWeights: ((model: InferenceModel<B, R>, weights: unknown) => void | Promise<void>) | undefined;
  private readonly gate = new ModelGate();
  private weightSyncReady: Promise<void> | undefined;

  private loop: Promise<void> | undefined;
  private listening: Promise<void> | undefined;
  private shuttingDown: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private inFlight: unknown[] | undefined;
  /** Why the loop stopped on its own, if it did. */
  loopError: unknown;
  /** Why the last `weightSync` poll failed (cleared by the next one that succeeds). */
  weightSyncError: unknown;

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
    this.gatherMs = o.gatherMs;
    this.shutdownTimeoutMs = o.shutdownTimeoutMs;
    this.collate = (o.collate as ((items: I[]) => B) | undefined) ?? (stack as unknown as (items: I[]) => B);
    this.split = (o.split as ((output: R, n: number) => O[]) | undefined) ?? (defaultSplit as unknown as (output: R, n: number) => O[]);
    this.recorder = new StatsRecorder(o.statsWindow);
    this.version = o.policyVersion;
    this.versionPath = o.policyVersionKey;
    this.weightSync = o.weightSync as WeightSyncReceiver<InferenceModel<B, R>> | undefined;
    this.weightSyncModelId = o.weightSyncModelId;
    this.applyWeights = o.applyWeights as typeof this.applyWeights;
    if (this.applyWeights && !this.weightSync) {
      throw new InvalidOptionsError(`${where}: applyWeights applies what weightSync.receive() returns, and no weightSync was given; pass weightSync too, or change the model with server.updateModel(fn)`, { details: { option: "applyWeights" } });
    }
  }

  /** The behaviour-policy version results are tagged with now (TorchRL's `policy_version`). */
  get policyVersion(): number {
    return this.version;
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
    // Concurrently with listening: requests queue meanwhile, and no batch runs before the
    // receiver has the model and its first weights (the gate holds the loop until then).
    const weightSync = this.weightSync;
    const init = weightSync ? this.gate.run(() => this.initWeightSync(weightSync)) : undefined;
    this.weightSyncReady = init;
    init?.catch(() => {}); // reported through ready() and loopError
    this.loop = listening.then(
      () => (init ? init.then(() => this.run(), (err) => this.abandon(err, true)) : this.run()),
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
    // With weightSync, also until it is initialised and connected (its error, if it failed).
    await this.weightSyncReady;
  }

  get isRunning(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  client(): InferenceClient<I, O> {
    return this.transport.client();
  }

  /** `n` clients of this server's transport, e.g. one per actor. */
  clients(n: number): InferenceClient<I, O>[] {
    const count = countCheck(n, "n", "clients(n)");
    return Array.from({ length: count }, () => this.transport.client());
  }

  /**
   * Runs `fn(model)` between batches (TorchRL's `update_model`): after the running batch, if
   * any, and before the next, which waits until `fn` settles; no batch ever sees a half-done
   * update. Then, with `markWeightUpdate` (default), bumps `policyVersion` and counts a weight
   * update. Resolves with what `fn` returned; if `fn` throws, rejects with its error and the
   * version stays (the model keeps whatever `fn` did before throwing: swap weights in whole).
   * Works before `start()` and after `shutdown()` too, at once.
   */
  updateModel<T>(fn: (model: InferenceModel<B, R>) => T | Promise<T>, opts: UpdateModelOptions = {}): Promise<Awaited<T>> {
    let markWeightUpdate: boolean;
    try {
      if (typeof fn !== "function") throw new InvalidOptionsError(`updateModel needs a function of the model: server.updateModel((model) => { /* change its weights */ }) (got ${typeof fn})`);
      markWeightUpdate = updateModelOptions.parse(opts).markWeightUpdate;
    } catch (err) {
      return Promise.reject(err);
    }
    return this.gate.run(async () => {
      const result = await fn(this.model);
      if (markWeightUpdate) this.markWeightUpdate();
      return result;
    });
  }

  stats(opts: { reset?: boolean } = {}): InferenceServerStats {
    const { reset } = statsOptions.parse(opts);
    const expired = this.transport.expired ?? 0;
    const s = this.recorder.snapshot(expired - this.expiredAtReset, this.transport.buffered ?? 0, this.version);
    if (reset) {
      this.recorder.reset();
      this.expiredAtReset = expired;
    }
    return s;
  }

  /** Batch sizes and model times of every batch so far, as histograms (what `watchInference` exports). */
  histograms(): InferenceHistograms {
    return this.recorder.histograms();
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
      await this.abandon(err, false);
    }
  }

  private async abandon(err: unknown, stopListening: boolean): Promise<void> {
    this.stopping = true;
    this.loopError = err;
    // A server that never served (its weight sync failed) leaves the queue group at once, so
    // new requests go to other servers of the name, or fail fast with no responders.
    if (stopListening) await Promise.resolve(this.transport.stopListening?.()).catch(() => {});
    if (this.inFlight) for (const cb of this.inFlight) this.transport.resolveException(cb, err);
    for (;;) {
      const { callbacks } = this.transport.drain(this.maxBatchSize);
      if (callbacks.length === 0) break;
      for (const cb of callbacks) this.transport.resolveException(cb, err);
    }
  }

  private async initWeightSync(ws: WeightSyncReceiver<InferenceModel<B, R>>): Promise<void> {
    // As upstream: the receiver's own flags say which steps were done already.
    let step = "initOnReceiver()";
    try {
      if (!ws.initializedOnReceiver) await ws.initOnReceiver({ modelId: this.weightSyncModelId, model: this.model });
      step = "connect()";
      if (!ws.synchronizedOnReceiver) await ws.connect();
    } catch (err) {
      throw weightSyncFailure(step, err, true);
    }
  }

  /**
   * One non-blocking look for new weights, with the model held; failures keep the old weights.
   * Undefined when nothing arrived synchronously: the loop then takes no await (most polls).
   */
  private pollWeights(ws: WeightSyncReceiver<InferenceModel<B, R>>): Promise<void> | undefined {
    let weights: unknown;
    try {
      weights = ws.receive();
    } catch (err) {
      this.weightSyncFailed("receive()", err);
      return undefined;
    }
    if (weights === undefined || weights === null) {
      this.weightSyncError = undefined;
      return undefined;
    }
    return this.takeWeights(weights);
  }

  private async takeWeights(received: unknown): Promise<void> {
    let step = "receive()";
    try {
      const weights = typeof (received as PromiseLike<unknown>).then === "function" ? await received : received;
      if (weights === undefined || weights === null) {
        this.weightSyncError = undefined;
        return;
      }
      step = "applyWeights()";
      if (this.applyWeights) await this.applyWeights(this.model, weights);
      this.markWeightUpdate();
      this.weightSyncError = undefined;
    } catch (err) {
      this.weightSyncFailed(step, err);
    }
  }

  private weightSyncFailed(step: string, err: unknown): void {
    this.weightSyncError = weightSyncFailure(step, err, false);
    this.recorder.weightSyncError();
  }

  private markWeightUpdate(): void {
    this.version++;
    this.recorder.weightUpdate();
  }

  private async serve(): Promise<void> {
    const t = this.transport;
    const ws = this.weightSync;
    while (!this.stopping) {
      if (ws) {
        // Polled every turn, as upstream, so an idle server takes weights too.
        const wait = this.gate.acquire();
        if (wait) await wait;
        try {
          const applying = this.pollWeights(ws);
          if (applying) await applying;
        } finally {
          this.gate.release();
        }
        if (this.stopping) break;
      }
      await this.waitForWork(this.timeoutMs);
      if (this.stopping) break;
      const first = t.drain(this.maxBatchSize);
      if (first.inputs.length === 0) continue;
      let { inputs, callbacks } = first;
      let receivedAt = first.receivedAt ?? [];
      const gatherTo = Math.min(this.maxBatchSize, inputs.length + this.lastBatchSize);
      const gatherUntil = this.lastAnsweredAt + this.gatherMs;
      const minUntil = performance.now() + this.timeoutMs;
      if (inputs.length < this.minBatchSize || (inputs.length < gatherTo && performance.now() < gatherUntil)) {
        // Copies to grow: the arrays a transport drained are not ours to change.
        inputs = inputs.slice();
        callbacks = callbacks.slice();
        receivedAt = receivedAt.slice();
        while (!this.stopping) {
          const now = performance.now();
          const remaining = Math.max(
            inputs.length < this.minBatchSize ? minUntil - now : 0,
            inputs.length < gatherTo ? gatherUntil - now : 0,
          );
          if (remaining <= 0) break;
          await this.waitForWork(remaining);
          const more = t.drain(this.maxBatchSize - inputs.length);
          inputs.push(...more.inputs);
          callbacks.push(...more.callbacks);
          if (more.receivedAt) receivedAt.push(...more.receivedAt);
        }
      }
      // In flight while waiting for an update too: a shutdown that times out answers them.
      this.inFlight = callbacks;
      const wait = this.gate.acquire();
      if (wait) await wait;
      try {
        await this.runBatch(inputs, callbacks, receivedAt);
      } finally {
        this.inFlight = undefined;
        this.gate.release();
        this.lastBatchSize = callbacks.length;
        this.lastAnsweredAt = performance.now();
      }
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
      this.recorder.batch(n, receivedAt, start, modelMs);
      const results = this.split(output, n);
      if (!Array.isArray(results)) {
        throw new ResultCountError(`split returned ${typeof results}, not an array of results for a batch of ${n} inputs.`, { details: { batchSize: n } });
      }
      if (results.length !== n) {
        throw new ResultCountError(`Model returned ${results.length} results for a batch of ${n} inputs.`, { details: { results: results.length, batchSize: n } });
      }
      const path = this.versionPath;
      if (path === null) for (let i = 0; i < n; i++) t.resolve(callbacks[i], results[i]!);
      else for (let i = 0; i < n; i++) t.resolve(callbacks[i], withVersion(results[i], path, this.version) as O);
    } catch (err) {
      this.recorder.failedBatch();
      for (const cb of callbacks) t.resolveException(cb, err);
    }
  }
}
