import type { StatsRecorder } from "../actor/index.ts";
import { createStatsRecorder } from "../actor/index.ts";
import type { ProcInfo } from "../agent/index.ts";
import type { ReplicaStateName } from "./types.ts";

/** A call the controller has sent to a replica and may have to fail when the replica dies. */
export interface Inflight {
  fail(err: Error): void;
}

/** The controller's view of one replica: its current incarnation, load, figures and health. */
export interface Replica {
  index: number;
  state: ReplicaStateName;
  /** Bumped when an incarnation dies: stale exit events and sessions compare against it. */
  generation: number;
  groupId: string;
  procs: ProcInfo[];
  subjects: string[];
  outstanding: number;
  inflight: Set<Inflight>;
  restarts: number;
  totalRestarts: number;
  sessions: number;
  stats: StatsRecorder;
  healthySince: number;
  lastError: string;
  hosts: string[];
  /** Set when a process of the incarnation being started exits before the replica is healthy. */
  startFailure: Map<string, string>;
  pinging: boolean;
  /** Consecutive heartbeats that found a process gone (a reconnecting process misses one). */
  missed: number;
  /** A call found nobody on the replica's subject: no routing to it until a heartbeat decides. */
  suspect: boolean;
  /** A rolling update (rolling.ts) holds it: out of routing until its update call returns. */
  updating: boolean;
  /** Told when `outstanding` drops to 0 (a rolling update waits for the replica's calls to finish). */
  onIdle: (() => void) | undefined;
  /** The lowest `version` its processes report (versions.ts), valid for incarnation `versionGroup`. */
  version: number | undefined;
  versionGroup: string;
  /** Outlier ejection (outlier-ejection.ts): out of routing until a probe finds it answering. */
  ejected: boolean;
  /** Why it is not serving, for status: failed (crash loop, waiting for capacity) or ejected; "" otherwise. */
  reason: string;
  /**
   * What the current incarnation's rank 0 host counted at the last heartbeat: every call it
   * served, including those registry handles sent it straight (src/registry/direct-routes.ts).
   */
  served: ServedFigures | undefined;
}

export interface ServedFigures {
  calls: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

export function createReplica(index: number): Replica {
  return {
    index,
    state: "starting",
    generation: 0,
    groupId: "",
    procs: [],
    subjects: [],
    outstanding: 0,
    inflight: new Set<Inflight>(),
    restarts: 0,
    totalRestarts: 0,
    sessions: 0,
    stats: createStatsRecorder(),
    healthySince: 0,
    lastError: "",
    hosts: [],
    startFailure: new Map<string, string>(),
    pinging: false,
    missed: 0,
    suspect: false,
    updating: false,
    onIdle: undefined,
    version: undefined,
    versionGroup: "",
    ejected: false,
    reason: "",
    served: undefined,
  };
}

export const errText = (err: unknown) => `${(err as Error)?.name ?? "Error"}: ${(err as Error)?.message ?? String(err)}`;
