/** Call counters and a latency window for one hosted actor (reported by ping/stats and $SRV). */
export interface ActorStats {
  calls: number;
  errors: number;
  rejected: number;
  expired: number;
  /** Calls cancelled by their callers while queued (they never ran). */
  cancelled: number;
  running: number;
  queued: number;
  p50Ms: number;
  p99Ms: number;
  /** Sum of processing time, nanoseconds (for $SRV.STATS). */
  processingTimeNs: number;
  lastError: string;
  startedAt: string;
}

const WINDOW = 1024;

export interface StatsRecorder {
  record(durationMs: number, failed: boolean, error?: string): void;
  rejected(): void;
  expired(): void;
  cancelled(): void;
  snapshot(running: number, queued: number): ActorStats;
}

export function createStatsRecorder(): StatsRecorder {
  const window = new Float64Array(WINDOW);
  let n = 0;
  let calls = 0;
  let errors = 0;
  let rejected = 0;
  let expired = 0;
  let cancelled = 0;
  let processingMs = 0;
  let lastError = "";
  const startedAt = new Date().toISOString();
  const quantile = (sorted: Float64Array, q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  return {
    record(d, failed, error) {
      window[n++ % WINDOW] = d;
      calls++;
      processingMs += d;
      if (failed) {
        errors++;
        if (error) lastError = error;
      }
    },
    rejected: () => void rejected++,
    expired: () => void expired++,
    cancelled: () => void cancelled++,
    snapshot(running, queued) {
      const sorted = window.slice(0, Math.min(n, WINDOW)).sort();
      return {
        calls, errors, rejected, expired, cancelled, running, queued,
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
        processingTimeNs: Math.round(processingMs * 1e6),
        lastError,
        startedAt,
      };
    },
  };
}
