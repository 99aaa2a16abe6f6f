/**
 * What the dashboard sends its page (JSON over server-sent events and /api/snapshot). The page
 * (assets/dashboard.js) reads these shapes; keep the two in step.
 */
import type { StatusRow } from "../service/index.ts";

/** How the page groups a registry entry: a replicated service, a plain actor, or a shared resource. */
export type ServiceKind = "service" | "actor" | "inference" | "executor";

export interface ServiceView {
  name: string;
  kind: ServiceKind;
  className: string;
  /** Replicas (or, for actors, hosting instances) and how many of them are healthy. */
  replicas: number;
  healthy: number;
  /** Calls per second over the last poll interval (0 on the first poll). */
  callsPerSecond: number;
  /** Errors / calls over the last poll interval, 0..1. */
  errorRate: number;
  /** Calls-weighted mean of the replicas' p50, and the worst replica's p99, milliseconds. */
  p50Ms: number;
  p99Ms: number;
  calls: number;
  errors: number;
}

/** A row of `actorbus status` (state: "starting" | "healthy" | "recovering" | "failed" | "stopped", or "unreachable: ..."), without its latency columns. */
export interface ReplicaView extends Omit<StatusRow, "p50Ms" | "p99Ms"> {
  /** Whether the dashboard can restart it (replicas of services; actors have no supervisor). */
  restartable: boolean;
}

export interface AgentView {
  hostId: string;
  hostname: string;
  pid: number;
  cpus: number;
  usedCpus: number;
  gpus: number;
  usedGpus: number;
  processes: number;
  /** The agent's last heartbeat (its own clock), epoch ms, and how often it beats. */
  heartbeatAt: number;
  heartbeatMs: number;
}

export interface InferenceView {
  name: string;
  meanBatchSize: number;
  /** Requests waiting for the next batch (undefined from servers that do not report it). */
  queued: number | undefined;
  requestsPerSecond: number;
  p50ModelMs: number;
  batches: number;
  error?: string;
}

export interface ExecutorView {
  name: string;
  poolSize: number;
  busy: number;
  idle: number;
  queued: number;
  restarts: number;
  error?: string;
}

export interface NamespaceSnapshot {
  namespace: string;
  /** Epoch ms of the poll. */
  at: number;
  services: ServiceView[];
  replicas: ReplicaView[];
  agents: AgentView[];
  inference: InferenceView[];
  executors: ExecutorView[];
  /** Why the last poll failed, if it did (the rest is then the previous poll's). */
  error?: string;
}

/** One point of a service's history: [epoch ms, calls/s, error rate, p50 ms, p99 ms]. */
export type HistoryPoint = [number, number, number, number, number];

export interface DashboardEvent {
  namespace: string;
  at: number;
  /** registered / removed: the registry; replica: a replica changed state; action: the dashboard acted. */
  type: "registered" | "removed" | "replica" | "action";
  service: string;
  text: string;
}

export interface DashboardHello {
  /** The namespaces this dashboard follows, in the order given. */
  namespaces: string[];
  allowActions: boolean;
  intervalMs: number;
  historySeconds: number;
}

export interface NamespacesView {
  followed: string[];
  /** Every namespace with a registry on the server (empty when it cannot be listed). */
  discovered: string[];
}
