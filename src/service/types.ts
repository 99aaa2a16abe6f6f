import type { Remote, ServiceHandle } from "../actor/index.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import type { ReplicaPlacement } from "./placement.ts";
import type { RollingOptions } from "../call/index.ts";
import type { RollingReport } from "./rolling.ts";

type AnyFn = (...args: any[]) => any;
type MethodKeys<T> = { [K in keyof T]: T[K] extends AnyFn ? K : never }[keyof T] & string;

/** Names the service proxy keeps for itself; reach methods with these names via svc.endpoint(name). */
export const RESERVED_NAMES = ["shutdown", "session", "status", "endpoint"] as const;
export type ReservedName = (typeof RESERVED_NAMES)[number];

/** One method of a service: calling it routes to one healthy replica. */
export type Endpoint<A extends unknown[], R> = ((...args: A) => Remote<R>) & {
  /** Same as calling the endpoint: one replica, chosen by the router. */
  route(...args: A): Remote<R>;
  /** Every healthy replica once; results in replica order. */
  fanout(...args: A): Promise<Awaited<R>[]>;
  /** One replica, every rank of it (procs > 1); results in rank order. */
  ranks(...args: A): Promise<Awaited<R>[]>;
  /**
   * Every healthy replica in turn (`maxUnavailable` at a time, default 1), each out of routing
   * until its call returns; results in replica order. `.with({ maxUnavailable })` sets options.
   */
  rolling: RollingEndpoint<A, R>;
};

/** `svc.method.rolling(...)`: a rolling update; `.with(options)` returns one with those options. */
export type RollingEndpoint<A extends unknown[], R> = ((...args: A) => Promise<Awaited<R>[]>) & {
  with(options: RollingOptions): RollingEndpoint<A, R>;
};

export type EndpointOf<F> = F extends (...args: infer A) => infer R ? Endpoint<A, R> : never;

export interface SessionOptions {
  /**
   * When the session's replica dies, bind to another one instead of failing with
   * SessionLostError (only for calls that do not depend on state kept in the replica).
   */
  rebind?: boolean;
}

/** A sticky view of a service: every call goes to the replica the first call was routed to. */
export type SessionHandle<T> = ServiceHandle<T> & AsyncDisposable;

export type ReplicaStateName = "starting" | "healthy" | "recovering" | "failed" | "stopped";

export interface ReplicaReport {
  index: number;
  state: ReplicaStateName;
  /** Current incarnation (changes on restart). */
  groupId: string;
  hosts: string[];
  pids: number[];
  inflight: number;
  calls: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  restarts: number;
  sessions: number;
  lastError: string;
  /** The `version` its processes report (the lowest of them); null until each has reported a number. */
  version: number | null;
  /** Out of routing while a rolling update calls it. */
  updating: boolean;
  /** Out of routing by outlier ejection (its calls timed out while others answered), until a probe finds it answering. */
  ejected: boolean;
  /** Why it is not serving: why it failed (a crash loop, waiting for capacity) or was ejected; "" while it serves. */
  reason: string;
  /**
   * What the replica itself counted (its current incarnation, as of the last heartbeat): every
   * call it served, including those registry handles sent it straight, which `calls` (the
   * controller's own routing) does not see; null before the first heartbeat. Its latencies are
   * the time on the replica, not the round trip.
   */
  served: { calls: number; errors: number; p50Ms: number; p99Ms: number } | null;
}

/** What `svc.status()`, the controller's status subject and `actorbus status` report. */
export interface ServiceReport {
  name: string;
  namespace: string;
  className: string;
  controllerId: string;
  placement: "agents" | "local";
  routing: string;
  startedAt: string;
  state: "running" | "stopping" | "stopped";
  options: Pick<ResolvedServiceOptions, "numReplicas" | "procs" | "hosts" | "withGpus" | "maxConcurrency" | "maxPending" | "maxRestarts" | "maxTaskRetries" | "timeoutMs">;
  sessions: number;
  replicas: ReplicaReport[];
  /** Replicas by state (every state, zeros included); `ejected` counts healthy replicas out of routing. */
  replicaStates: Record<ReplicaStateName | "ejected", number>;
  /** The rolling update in progress, if any. */
  rolling: RollingReport | null;
}

export interface ServiceControls<T> {
  /** Stops routing, finishes (or after drainTimeoutMs fails) in-flight calls, stops every process, deregisters. */
  shutdown(): Promise<void>;
  /** Runs `fn` with a sticky session, ended when `fn` settles. */
  session<R>(fn: (s: ServiceHandle<T>) => Promise<R>, options?: SessionOptions): Promise<R>;
  /** A sticky session to end with `await using` or `await s[Symbol.asyncDispose]()`. */
  session(options?: SessionOptions): SessionHandle<T>;
  /** Replicas, their hosts, states and call figures, now. */
  status(): ServiceReport;
  /** A method by name (for methods whose names the proxy reserves, such as "status"). */
  endpoint<K extends MethodKeys<T>>(method: K): EndpointOf<T[K]>;
}

/** What asService() and asActor() return: the class's methods as routed endpoints, plus controls. */
export type ServiceProxy<T> = { readonly [K in Exclude<MethodKeys<T>, ReservedName>]: EndpointOf<T[K]> } & ServiceControls<T>;

/**
 * What an Actor class's static launch() gets for one replica (re)start. The default launch()
 * is `await ctx.spawn()`; an override may prepare arguments, or do work around the spawn.
 */
export interface LaunchContext {
  readonly service: string;
  readonly namespace: string;
  /** 0-based replica number (stable across restarts). */
  readonly replicaIndex: number;
  /** 0 on the first launch, then the restart count. */
  readonly attempt: number;
  readonly options: Readonly<Omit<ResolvedServiceOptions, "services">>;
  /** The constructor arguments given to asService()/asActor(). */
  readonly args: readonly unknown[];
  /** The hosts this replica's ranks were placed on. */
  readonly placement: ReplicaPlacement;
  /** Starts the replica's processes (constructed with `args`, default ctx.args); resolves once all serve. Call it once. */
  spawn(args?: readonly unknown[]): Promise<void>;
}

/** One replica as the static shutdown() hook sees it (default: stop its processes). */
export interface ReplicaRef {
  readonly service: string;
  readonly index: number;
  readonly hosts: readonly string[];
  readonly pids: readonly number[];
  /** SIGTERM its processes (they finish running calls), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
}
