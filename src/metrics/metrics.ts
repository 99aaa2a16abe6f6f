import type { Registry } from "prom-client";
import { InvalidOptionsError } from "../errors/index.ts";
import { bool, defineOptions, obj, type SpecFor } from "../options/index.ts";
import { DURATION_BUCKETS, NO_CALLS, ServiceCalls, type CallRecorder } from "./calls.ts";
import { CollectedFamily, type Reader } from "./family.ts";
import { Histogram, pushHistogram } from "./histogram.ts";
import { FAMILIES, type FamilyName } from "./names.ts";

/**
 * The Prometheus metrics of this process's actorbus objects. Pass it to getServices() and
 * startAgent() (`metrics`), or to watchExecutor()/watchInference(); serve it with serveMetrics()
 * or merge `registry` into the application's own.
 */
export interface Metrics {
  /** The prom-client Registry holding every actorbus family (Registry.merge([...]) takes it). */
  readonly registry: Registry;
  /** The exposition (Prometheus text format). */
  expose(): Promise<string>;
  readonly contentType: string;
}

/** The side of a Metrics object that actorbus objects record into (internal). */
export interface MetricsSink {
  readonly on: boolean;
  /** Host-side calls of a service; `methods` is its declared set (others count as "other"). */
  host(namespace: string, service: string, methods: Iterable<string>): CallRecorder;
  /** Client-side calls; without `methods`, the first 64 names get labels of their own. */
  client(namespace: string, service: string, methods?: Iterable<string>): CallRecorder;
  /** Adds a scrape-time reader to a family; the returned function removes it. */
  read(family: FamilyName, reader: Reader): () => void;
  /**
   * The registry watch lag of a namespace, seconds. One series per namespace however many
   * registries of it the process opens (a second reader of the same labels would break the scrape).
   */
  watchLag(namespace: string): Histogram | undefined;
}

export interface CreateMetricsOptions {
  /** Register into this prom-client Registry instead of a new one. */
  registry?: Registry;
  /**
   * Also collect prom-client's default process metrics (CPU, memory, event loop lag). Default
   * false: three of them (nodejs_active_*_total gauges) fail `promtool check metrics`' lint.
   */
  processMetrics?: boolean;
}

const createOptions = defineOptions(
  "createMetrics options",
  {
    registry: obj<Registry>("pass a prom-client Registry, or leave it out for a new one", ["registerMetric", "metrics"]),
    processMetrics: bool(),
  } satisfies SpecFor<CreateMetricsOptions>,
  { processMetrics: false },
  { example: "{ processMetrics: true }" },
);

export const NO_METRICS: MetricsSink = { on: false, host: () => NO_CALLS, client: () => NO_CALLS, read: () => () => {}, watchLag: () => undefined };

/** The recording side of a `metrics` option, or the null object that costs the call path nothing. */
export function sinkOf(m: Metrics | undefined): MetricsSink {
  return m ? (m as unknown as MetricsSink) : NO_METRICS;
}

/**
 * Creates the metric families in a Registry. prom-client is loaded here, on first use, so
 * processes that never ask for metrics never load it.
 */
export async function createMetrics(options: CreateMetricsOptions = {}): Promise<Metrics> {
  const o = createOptions.parse(options);
  const prom = await import("prom-client");
  const registry = o.registry ?? new prom.Registry();
  const families = new Map<FamilyName, CollectedFamily>();
  for (const [name, { help, type }] of Object.entries(FAMILIES) as [FamilyName, (typeof FAMILIES)[FamilyName]][]) {
    const f = new CollectedFamily(name, help, type);
    try {
      registry.registerMetric(f as unknown as Parameters<Registry["registerMetric"]>[0]);
    } catch (err) {
      throw new InvalidOptionsError(`the registry already has a metric named ${name}: give each Metrics object its own registry (one per process is enough)`, { cause: err });
    }
    families.set(name, f);
  }
  if (o.processMetrics) prom.collectDefaultMetrics({ register: registry });

  const read = (family: FamilyName, reader: Reader) => families.get(family)!.from(reader);
  const sides = (calls: FamilyName, durations: FamilyName) => {
    const byService = new Map<string, ServiceCalls>();
    read(calls, (push) => {
      for (const s of byService.values()) s.readCalls(push);
    });
    read(durations, (push) => {
      for (const s of byService.values()) s.readDurations(push, durations);
    });
    return (namespace: string, service: string, methods?: Iterable<string>): ServiceCalls => {
      const key = `${namespace}\u0000${service}`;
      let s = byService.get(key);
      if (!s) byService.set(key, (s = new ServiceCalls(namespace, service, methods)));
      else if (methods) s.declare(methods);
      return s;
    };
  };
  const host = sides("actorbus_calls_total", "actorbus_call_duration_seconds");
  const client = sides("actorbus_client_calls_total", "actorbus_client_call_duration_seconds");
  const overloads = new Set<ServiceCalls>();
  read("actorbus_overload_rejections_total", (push) => {
    for (const s of overloads) push({ namespace: s.namespace, service: s.service }, s.overloads);
  });

  const lags = new Map<string, Histogram>();
  read("actorbus_registry_watch_lag_seconds", (push) => {
    for (const [namespace, h] of lags) pushHistogram(push, "actorbus_registry_watch_lag_seconds", { namespace }, h.snapshot());
  });

  const metrics: Metrics & MetricsSink = {
    registry,
    get contentType() {
      return registry.contentType;
    },
    expose: () => registry.metrics(),
    on: true,
    host(namespace, service, methods) {
      const s = host(namespace, service, methods);
      overloads.add(s);
      return s;
    },
    client: (namespace, service, methods) => client(namespace, service, methods),
    read,
    watchLag(namespace) {
      let h = lags.get(namespace);
      if (!h) lags.set(namespace, (h = new Histogram(DURATION_BUCKETS)));
      return h;
    },
  };
  return metrics;
}
