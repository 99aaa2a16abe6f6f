import { InvalidOptionsError } from "../errors/index.ts";
import type { Metrics } from "./metrics.ts";
import { sinkOf } from "./metrics.ts";
import { pushHistogram, type HistogramSnapshot } from "./histogram.ts";

/** What watchExecutor reads: PythonExecutorService and the pool behind it have it. */
export interface ExecutorStatsSource {
  stats(): {
    queued: number;
    executions: number;
    timeouts: number;
    crashes: number;
    restarts: number;
    interpreters: { state: string }[];
  };
}

/** What watchInference reads: InferenceServer has it. */
export interface InferenceStatsSource {
  /** `queued` (requests waiting for the next batch) is reported when present. */
  stats(): { requests: number; batches: number; failedBatches: number; queued?: number };
  /** Cumulative batch-size and model-time histograms, reported when present. */
  histograms?(): { batchSize: HistogramSnapshot; modelSeconds: HistogramSnapshot };
}

const INTERPRETER_STATES = ["idle", "busy", "starting", "down"] as const;

const checkName = (fn: string, name: unknown): string => {
  if (typeof name !== "string" || name.length === 0 || name.length > 128) throw new InvalidOptionsError(`${fn}: the name labels the series; pass a short non-empty string such as "python"`);
  return name;
};

/**
 * Reports a Python executor pool under `executor="<name>"`, read from its stats() when Prometheus
 * scrapes. Returns the function that stops reporting it.
 */
export function watchExecutor(metrics: Metrics, name: string, executor: ExecutorStatsSource): () => void {
  const base = { executor: checkName("watchExecutor", name) };
  const sink = sinkOf(metrics);
  const stops = [
    sink.read("actorbus_executor_interpreters", (push) => {
      const st = executor.stats();
      for (const state of INTERPRETER_STATES) push({ ...base, state }, st.interpreters.reduce((n, i) => n + (i.state === state ? 1 : 0), 0));
    }),
    sink.read("actorbus_executor_queue_depth", (push) => push(base, executor.stats().queued)),
    sink.read("actorbus_executor_executions_total", (push) => {
      const st = executor.stats();
      push({ ...base, outcome: "ok" }, Math.max(0, st.executions - st.timeouts - st.crashes));
      push({ ...base, outcome: "timeout" }, st.timeouts);
      push({ ...base, outcome: "crash" }, st.crashes);
    }),
    sink.read("actorbus_executor_interpreter_restarts_total", (push) => push(base, executor.stats().restarts)),
  ];
  return () => {
    for (const s of stops) s();
  };
}

/** Reports an inference server under `server="<name>"`, read from its stats() at scrape time. */
export function watchInference(metrics: Metrics, name: string, server: InferenceStatsSource): () => void {
  const base = { server: checkName("watchInference", name) };
  const sink = sinkOf(metrics);
  const stops = [
    sink.read("actorbus_inference_requests_total", (push) => push(base, server.stats().requests)),
    sink.read("actorbus_inference_batches_total", (push) => {
      const st = server.stats();
      push({ ...base, outcome: "ok" }, st.batches);
      push({ ...base, outcome: "failed" }, st.failedBatches);
    }),
    sink.read("actorbus_inference_queue_depth", (push) => {
      const queued = server.stats().queued;
      if (queued !== undefined) push(base, queued);
    }),
    sink.read("actorbus_inference_batch_size", (push) => {
      if (server.histograms) pushHistogram(push, "actorbus_inference_batch_size", base, server.histograms().batchSize);
    }),
    sink.read("actorbus_inference_model_duration_seconds", (push) => {
      if (server.histograms) pushHistogram(push, "actorbus_inference_model_duration_seconds", base, server.histograms().modelSeconds);
    }),
  ];
  return () => {
    for (const s of stops) s();
  };
}
