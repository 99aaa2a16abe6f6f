import { BATCH_SIZE_BUCKETS, DURATION_BUCKETS, Histogram, type HistogramSnapshot } from "../metrics/index.ts";

/** What `InferenceServer.stats()` reports (TorchRL's server stats, milliseconds throughout). */
export interface InferenceServerStats {
  /** Requests answered by a model call since start (or the last reset). */
  requests: number;
  /** Model calls. */
  batches: number;
  /** Batches whose collate, model or split failed; every caller of the batch got the error. */
  failedBatches: number;
  /** Requests dropped before the model because their caller's deadline had passed. */
  expired: number;
  /** Requests waiting for the next batch now (0 when the transport cannot tell). */
  queued: number;
  meanBatchSize: number;
  /** Time from arrival at the server to the start of the model call. */
  p50QueueWaitMs: number;
  p95QueueWaitMs: number;
  /** Duration of the model call alone (collate and split excluded). */
  p50ModelMs: number;
  p95ModelMs: number;
  requestsPerSecond: number;
  batchesPerSecond: number;
  /** The behaviour-policy version results are tagged with now (not reset by `reset`). */
  policyVersion: number;
  /** Updates that bumped the version: `updateModel` calls and weights received through `weightSync`. */
  weightUpdates: number;
  /** `weightSync` polls that threw (receive or applyWeights); the server kept its weights and version. */
  weightSyncErrors: number;
}

/**
 * What `InferenceServer.histograms()` reports: every batch since the server was made (not
 * reset by `stats({ reset })`), for Prometheus histograms (`watchInference`).
 */
export interface InferenceHistograms {
  /** Requests per model call. */
  batchSize: HistogramSnapshot;
  /** Duration of the model call alone, seconds. */
  modelSeconds: HistogramSnapshot;
}

/** Recent samples only (a fixed window), so a long-running server reports current behaviour. */
class Window {
  private readonly values: Float64Array;
  private n = 0;
  constructor(size: number) {
    this.values = new Float64Array(size);
  }
  add(v: number): void {
    this.values[this.n++ % this.values.length] = v;
  }
  sorted(): Float64Array {
    return this.values.slice(0, Math.min(this.n, this.values.length)).sort();
  }
  mean(): number {
    const k = Math.min(this.n, this.values.length);
    if (k === 0) return 0;
    let s = 0;
    for (let i = 0; i < k; i++) s += this.values[i]!;
    return s / k;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.round((sorted.length - 1) * p)]!;
}

export class StatsRecorder {
  private startedAt = performance.now();
  private requests = 0;
  private batches = 0;
  private failed = 0;
  private weightUpdates = 0;
  private weightSyncErrors = 0;
  private batchSizes: Window;
  private queueWait: Window;
  private modelMs: Window;
  // Cumulative, unlike the windows: Prometheus histograms must only grow.
  private readonly batchSizeHistogram = new Histogram(BATCH_SIZE_BUCKETS);
  private readonly modelSecondsHistogram = new Histogram(DURATION_BUCKETS);

  constructor(private readonly windowSize: number) {
    this.batchSizes = new Window(windowSize);
    this.queueWait = new Window(windowSize);
    this.modelMs = new Window(windowSize);
  }

  /** A batch of `size` requests, received at `receivedAt` each, whose model call started at `startedAt`. */
  batch(size: number, receivedAt: readonly number[], startedAt: number, modelMs: number): void {
    this.requests += size;
    this.batches++;
    this.batchSizes.add(size);
    for (let i = 0; i < receivedAt.length; i++) this.queueWait.add(startedAt - receivedAt[i]!);
    this.modelMs.add(modelMs);
    this.batchSizeHistogram.observe(size);
    this.modelSecondsHistogram.observe(modelMs / 1000);
  }

  histograms(): InferenceHistograms {
    return { batchSize: this.batchSizeHistogram.snapshot(), modelSeconds: this.modelSecondsHistogram.snapshot() };
  }

  failedBatch(): void {
    this.failed++;
  }

  weightUpdate(): void {
    this.weightUpdates++;
  }

  weightSyncError(): void {
    this.weightSyncErrors++;
  }

  snapshot(expired: number, queued: number, policyVersion: number): InferenceServerStats {
    const elapsedS = Math.max((performance.now() - this.startedAt) / 1000, 1e-9);
    const qw = this.queueWait.sorted();
    const mm = this.modelMs.sorted();
    return {
      requests: this.requests,
      batches: this.batches,
      failedBatches: this.failed,
      expired,
      queued,
      meanBatchSize: this.batchSizes.mean(),
      p50QueueWaitMs: percentile(qw, 0.5),
      p95QueueWaitMs: percentile(qw, 0.95),
      p50ModelMs: percentile(mm, 0.5),
      p95ModelMs: percentile(mm, 0.95),
      requestsPerSecond: this.requests / elapsedS,
      batchesPerSecond: this.batches / elapsedS,
      policyVersion,
      weightUpdates: this.weightUpdates,
      weightSyncErrors: this.weightSyncErrors,
    };
  }

  reset(): void {
    this.startedAt = performance.now();
    this.requests = 0;
    this.batches = 0;
    this.failed = 0;
    this.weightUpdates = 0;
    this.weightSyncErrors = 0;
    this.batchSizes = new Window(this.windowSize);
    this.queueWait = new Window(this.windowSize);
    this.modelMs = new Window(this.windowSize);
  }
}
