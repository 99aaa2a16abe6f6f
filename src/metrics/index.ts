export { createMetrics, sinkOf, NO_METRICS } from "./metrics.ts";
export type { Metrics, MetricsSink, CreateMetricsOptions } from "./metrics.ts";
export { codeOf, NO_CALLS, OTHER, DURATION_BUCKETS } from "./calls.ts";
export type { CallRecorder, MethodRecorder } from "./calls.ts";
export { FAMILIES, type FamilyName } from "./names.ts";
export type { Push, Reader } from "./family.ts";
export { serveMetrics } from "./serve.ts";
export type { MetricsServer, ServeMetricsOptions } from "./serve.ts";
export { watchExecutor, watchInference } from "./sources.ts";
