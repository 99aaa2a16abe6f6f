import type { ConnectionAuth } from "../connection/index.ts";
import type { WireError } from "../errors/index.ts";

/**
 * What it takes to start one process of a replica, wherever it runs (an agent or the caller's
 * machine). Plain data: it crosses NATS to agents and Node's IPC channel to the process.
 * No secrets: they reach a replica from its spawner over IPC (ProcConnection), never in a spec.
 */
export interface ProcSpec {
  namespace: string;
  service: string;
  /** Instance id of the service controller: exit events go to subjects.events(controllerId). */
  controllerId: string;
  /** The replica incarnation (new on every restart); subjects.replica(groupId, rank). */
  groupId: string;
  /** Unique per process: its instance subject answers ping/stats/stop. */
  procId: string;
  rank: number;
  size: number;
  /** file: URL of the module exporting the class, and the export's name. */
  moduleUrl: string;
  exportName: string;
  args: unknown[];
  actor: { maxConcurrency: number; maxPending: number; timeoutMs: number; drainTimeoutMs: number };
  /** Also serve the service's replica queue subject (queue-group routing). */
  queueGroup: boolean;
  /** Needs one GPU (CUDA_VISIBLE_DEVICES is set to the one assigned). */
  gpu: boolean;
  env: Record<string, string>;
  /** Label for log prefixes, e.g. "counter#1.0". */
  label: string;
}

/** Connection settings a spawner hands to its processes over IPC; built on the spawner's host, never sent over NATS. */
export interface ProcConnection {
  servers: string[];
  inboxPrefix?: string;
  /** The spawner's own credentials (IPC only: not argv, env, specs or logs). */
  auth?: ConnectionAuth;
}

/** Spawner → process (IPC): the spec, once, right after spawn. */
export interface StartMessage {
  type: "start";
  spec: ProcSpec;
  connection: ProcConnection;
  hostId: string;
}

/** Process → spawner (IPC). */
export type ProcMessage = { type: "ready"; pid: number } | { type: "failed"; error: WireError };

/** A started process as the spawner reports it. */
export interface ProcInfo {
  procId: string;
  groupId: string;
  rank: number;
  pid: number;
  hostId: string;
  gpus: number[];
}

/** Published on subjects.events(controllerId) when a process of its replicas exits. */
export interface ProcExitEvent {
  type: "exit";
  procId: string;
  groupId: string;
  hostId: string;
  pid: number;
  code: number | null;
  signal: string | null;
}

/** Requests on subjects.agent(hostId). */
export type AgentRequest =
  | { op: "ping" }
  | { op: "spawn"; procs: ProcSpec[]; startTimeoutMs: number }
  | { op: "stop"; procIds: string[]; graceMs: number }
  | { op: "list" };

/** Capacity and liveness of a host, in KV key host.<hostId> and in ping replies. */
export interface HostRecord {
  hostId: string;
  hostname: string;
  pid: number;
  /** Process slots (one per replica process). */
  cpus: number;
  gpus: number;
  usedCpus: number;
  usedGpus: number[];
  processes: number;
  startedAt: string;
  heartbeatAt: string;
  heartbeatMs: number;
}
