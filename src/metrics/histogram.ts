import type { Push } from "./family.ts";

/** Upper bounds of batch-size histograms, requests (powers of two up to the largest sensible batch). */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/** What a histogram holds at one instant: per-bucket counts (not cumulative), sum and count. */
export interface HistogramSnapshot {
  readonly bounds: readonly number[];
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

/**
 * A cumulative histogram of plain numbers: observe() is a bucket scan and two additions, so the
 * paths that record (a batch, a registry change) allocate nothing; samples are built at scrape.
 * Never reset: Prometheus histograms only grow.
 */
export class Histogram {
  private readonly counts: Float64Array;
  private sum = 0;
  private n = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    this.sum += v;
    this.n++;
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]!) i++;
    if (i < this.bounds.length) this.counts[i]!++;
  }

  snapshot(): HistogramSnapshot {
    return { bounds: this.bounds, counts: Array.from(this.counts), sum: this.sum, count: this.n };
  }
}

/** Pushes a snapshot as Prometheus `_bucket` (cumulative, with `+Inf`), `_sum` and `_count` samples. */
export function pushHistogram(push: Push, name: string, labels: Record<string, string | number>, h: HistogramSnapshot): void {
  let acc = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    acc += h.counts[i] ?? 0;
    push({ ...labels, le: h.bounds[i]! }, acc, `${name}_bucket`);
  }
  push({ ...labels, le: "+Inf" }, h.count, `${name}_bucket`);
  push(labels, h.sum, `${name}_sum`);
  push(labels, h.count, `${name}_count`);
}
