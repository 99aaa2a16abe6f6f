import type { HostRecord } from "../agent/index.ts";
import type { ServiceRecord } from "../registry/index.ts";
import type { NamespaceStatus } from "../service/index.ts";
import type { AgentView, ExecutorView, InferenceView, ReplicaView, ServiceKind, ServiceView } from "./types.ts";

/**
 * Pure functions from what `actorbus status` collects (collectStatus) to what the page shows:
 * kinds, per-service rates from the difference between two polls, replica rows. No I/O here.
 */

export const EXECUTOR_CLASS = "PythonExecutorService";

export function kindOf(record: ServiceRecord | undefined): ServiceKind {
  if (record?.kind === "service") return "service";
  if (record?.metadata?.kind === "inference") return "inference";
  if (record?.className === EXECUTOR_CLASS) return "executor";
  return "actor";
}

/** Cumulative figures of a service at one poll, to difference with the next. */
export interface Totals {
  at: number;
  calls: number;
  errors: number;
}

export function replicaViews(status: NamespaceStatus): ReplicaView[] {
  const kinds = new Map(status.records.map((r) => [r.name, kindOf(r)]));
  return status.rows.map((r) => ({
    service: r.service,
    replica: r.replica,
    hosts: r.hosts,
    pids: r.pids,
    state: r.state,
    inflight: r.inflight,
    restarts: r.restarts,
    calls: r.calls,
    errors: r.errors,
    version: r.version,
    ...(r.reason ? { reason: r.reason } : {}),
    restartable: kinds.get(r.service) === "service" && r.replica !== "-",
  }));
}

/**
 * One row per live service. `previous` holds each service's totals at the last poll (updated
 * in place): rates are the difference over the time between the two polls. Counters that went
 * down (a replica restarted with fresh figures) count from zero. `own` is the calls the
 * dashboard itself made to each service since the last poll (stats() of inference servers and
 * executors): they are left out of the rate, so an idle server does not look busy.
 */
export function serviceViews(status: NamespaceStatus, at: number, previous: Map<string, Totals>, own: ReadonlyMap<string, number> = new Map()): ServiceView[] {
  const byService = new Map<string, NamespaceStatus["rows"]>();
  for (const r of status.rows) {
    let rows = byService.get(r.service);
    if (!rows) byService.set(r.service, (rows = []));
    rows.push(r);
  }
  const out: ServiceView[] = [];
  const seen = new Set<string>();
  for (const record of status.records) {
    const rows = byService.get(record.name) ?? [];
    const calls = rows.reduce((n, r) => n + r.calls, 0);
    const errors = rows.reduce((n, r) => n + r.errors, 0);
    const before = previous.get(record.name);
    let callsPerSecond = 0;
    let errorRate = 0;
    if (before && at > before.at) {
      const dCalls = Math.max(0, (calls >= before.calls ? calls - before.calls : calls) - (own.get(record.name) ?? 0));
      const dErrors = errors >= before.errors ? errors - before.errors : errors;
      callsPerSecond = dCalls / ((at - before.at) / 1000);
      errorRate = dCalls > 0 ? Math.min(1, dErrors / dCalls) : 0;
    }
    previous.set(record.name, { at, calls, errors });
    seen.add(record.name);
    const weight = rows.reduce((n, r) => n + r.calls, 0);
    const p50Ms = weight > 0 ? rows.reduce((s, r) => s + r.p50Ms * r.calls, 0) / weight : Math.max(0, ...rows.map((r) => r.p50Ms));
    out.push({
      name: record.name,
      kind: kindOf(record),
      className: record.className,
      replicas: rows.filter((r) => r.replica !== "-").length,
      healthy: rows.filter((r) => r.state === "healthy").length,
      callsPerSecond,
      errorRate,
      p50Ms,
      p99Ms: Math.max(0, ...rows.map((r) => r.p99Ms)),
      calls,
      errors,
    });
  }
  for (const name of previous.keys()) if (!seen.has(name)) previous.delete(name);
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function agentViews(hosts: HostRecord[]): AgentView[] {
  return hosts
    .map((h) => ({
      hostId: h.hostId,
      hostname: h.hostname,
      pid: h.pid,
      cpus: h.cpus,
      usedCpus: h.usedCpus,
      gpus: h.gpus,
      usedGpus: h.usedGpus.length,
      processes: h.processes,
      heartbeatAt: Date.parse(h.heartbeatAt) || 0,
      heartbeatMs: h.heartbeatMs,
    }))
    .sort((a, b) => (a.hostId < b.hostId ? -1 : 1));
}

/** What an inference endpoint's stats() returns, as far as the page needs it (older servers lack `queued`). */
export interface InferenceStatsLike {
  requests: number;
  batches: number;
  meanBatchSize: number;
  queued?: number;
  p50ModelMs: number;
}

export function inferenceView(name: string, st: InferenceStatsLike, before: Totals | undefined, at: number): InferenceView {
  const dt = before && at > before.at ? (at - before.at) / 1000 : 0;
  const d = before ? (st.requests >= before.calls ? st.requests - before.calls : st.requests) : 0;
  return {
    name,
    meanBatchSize: st.meanBatchSize,
    queued: st.queued,
    requestsPerSecond: dt > 0 ? d / dt : 0,
    p50ModelMs: st.p50ModelMs,
    batches: st.batches,
  };
}

/** What a PythonExecutorService's stats() returns, as far as the page needs it. */
export interface ExecutorStatsLike {
  poolSize: number;
  busy: number;
  idle: number;
  queued: number;
  restarts: number;
}

export function executorView(name: string, st: ExecutorStatsLike): ExecutorView {
  return { name, poolSize: st.poolSize, busy: st.busy, idle: st.idle, queued: st.queued, restarts: st.restarts };
}
