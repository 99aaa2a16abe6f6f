import type { MetricsSink } from "../metrics/index.ts";
import type { Replica } from "./replica-state.ts";
import type { ReplicaStateName } from "./types.ts";

const STATES: readonly ReplicaStateName[] = ["starting", "healthy", "recovering", "failed", "stopped"];

/**
 * The controller's view of its replicas, read when Prometheus scrapes: nothing on the call path.
 * Returns the function that stops reporting them (the service shut down).
 */
export function watchReplicas(metrics: MetricsSink, namespace: string, service: string, replicas: readonly Replica[]): () => void {
  const base = { namespace, service };
  const stops = [
    metrics.read("actorbus_replicas", (push) => {
      // Every state, zeros included, so an alert on failed > 0 has a series before the first failure.
      for (const state of STATES) push({ ...base, state }, replicas.reduce((n, r) => n + (r.state === state ? 1 : 0), 0));
    }),
    metrics.read("actorbus_replica_restarts_total", (push) => {
      for (const r of replicas) push({ ...base, replica: r.index }, r.totalRestarts);
    }),
    metrics.read("actorbus_replica_calls_in_flight", (push) => {
      for (const r of replicas) push({ ...base, replica: r.index }, r.outstanding);
    }),
    metrics.read("actorbus_replica_calls_total", (push) => {
      for (const r of replicas) {
        const st = r.stats.snapshot(r.outstanding, 0);
        push({ ...base, replica: r.index, outcome: "ok" }, st.calls - st.errors);
        push({ ...base, replica: r.index, outcome: "error" }, st.errors);
      }
    }),
  ];
  return () => {
    for (const s of stops) s();
  };
}
