import type { StatsRecorder } from "../actor/index.ts";
import { createStatsRecorder, unwrapReply } from "../actor/index.ts";
import type { ProcInfo } from "../agent/index.ts";
import type { Codec } from "../codec/index.ts";
import { ServiceUnavailableError } from "../errors/index.ts";
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
  };
}

export const errText = (err: unknown) => `${(err as Error)?.name ?? "Error"}: ${(err as Error)?.message ?? String(err)}`;

/**
 * One call in flight to one replica. A class rather than closures: the call path allocates one
 * object per call instead of half a dozen functions (and their names, under tsx).
 */
export class RoutedCall implements Inflight {
  private done = false;
  private readonly t0 = performance.now();
  private readonly gen: number;

  constructor(
    private readonly r: Replica,
    private readonly codec: Codec,
    private readonly allRanks: boolean,
    /** Relayed calls: the reply bytes go back as they came, never decoded here. */
    private readonly raw: boolean,
    private readonly resolve: (v: unknown) => void,
    private readonly reject: (e: unknown) => void,
    private readonly onUnavailable: (r: Replica, gen: number, err: ServiceUnavailableError) => Error,
  ) {
    this.gen = r.generation;
    r.outstanding++;
    r.inflight.add(this);
  }

  private settle(err: unknown, value?: unknown, remoteFailure = false): void {
    if (this.done) return;
    this.done = true;
    const r = this.r;
    r.inflight.delete(this);
    r.outstanding--;
    const ms = performance.now() - this.t0;
    if (err !== undefined) {
      r.stats.record(ms, true, errText(err));
      this.reject(err);
    } else {
      r.stats.record(ms, remoteFailure);
      this.resolve(value);
    }
  }

  fail(err: Error): void {
    this.settle(err);
  }

  reply(bytes: Uint8Array): void {
    if (this.raw) {
      // [1, error] encodes as 0x92 0x01: the replica's stats count it without a decode.
      this.settle(undefined, bytes, bytes[1] === 1);
      return;
    }
    let v: unknown;
    try {
      v = unwrapReply<unknown>(this.codec, bytes);
    } catch (e) {
      return this.settle(e);
    }
    this.settle(undefined, this.allRanks ? [v] : v);
  }

  replies(all: Uint8Array[]): void {
    const vs: unknown[] = [];
    try {
      for (const b of all) vs.push(unwrapReply<unknown>(this.codec, b));
    } catch (e) {
      return this.settle(e);
    }
    this.settle(undefined, this.allRanks ? vs : vs[0]);
  }

  error(err: unknown): void {
    this.settle(err instanceof ServiceUnavailableError ? this.onUnavailable(this.r, this.gen, err) : err);
  }
}
