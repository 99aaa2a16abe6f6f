import { nuid } from "@nats-io/transport-node";
import { declaredMethods, encodeOk, requestCall, unwrapReply, type HostedCall, type OutgoingCall } from "../actor/index.ts";
import { callSettings, createCallIds, type ResolvedCallOptions } from "../call/index.ts";
import { materialize } from "../stream/index.ts";
import type { ProcExitEvent, ProcInfo, ProcSpec } from "../agent/index.ts";
import { abortError, type Inbound, type Subscription } from "../connection/index.ts";
import {
  ActorBusError,
  CallTimeoutError,
  ClosedError,
  InvalidOptionsError,
  OverloadedError,
  ReplicaCrashedError,
  ServiceExistsError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import { getServices, pingInstance, type Services } from "../registry/index.ts";
import { subjectsFor } from "../subjects/index.ts";
import { SessionLostError } from "./errors.ts";
import { forwarderClass } from "./forwarder.ts";
import { chooseLauncher } from "./launchers.ts";
import { serveMicro, type MicroEndpointStats, type MicroResponder } from "./micro.ts";
import type { ModuleRef } from "./module-ref.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { placeReplica, type ReplicaPlacement } from "./placement.ts";
import { createReplica, errText, RoutedCall, type Replica } from "./replica-state.ts";
import { ANY_CALL, createRouter, NO_METADATA, SESSION_CALL, type RouteRequest } from "./router.ts";
import type { LaunchContext, ReplicaRef, ReplicaReport, ServiceReport } from "./types.ts";

/** The statics of an Actor class the controller uses (the hooks may be overridden). */
export interface LaunchableClass {
  readonly name: string;
  launch(ctx: LaunchContext): Promise<void>;
  shutdown(target: unknown): Promise<void>;
}

export interface ControllerParams {
  cls: LaunchableClass;
  /** The exported class (what replicas construct). */
  base: Function;
  ref: ModuleRef;
  options: ResolvedServiceOptions;
  args: unknown[];
  name: string;
}

export interface SessionState {
  readonly id: string;
  readonly rebind: boolean;
  replica: Replica | undefined;
  generation: number;
  closed: boolean;
}

export interface RouteOptions {
  session?: SessionState;
  ranks?: boolean;
  /** Per-call options bound with withOptions() on the proxy, a session or an endpoint. */
  call?: ResolvedCallOptions;
}

/** One call on its way to a replica: encoded once, whatever the attempts and targets. */
interface Outgoing extends OutgoingCall {
  /** The decoded arguments, for routers that read the call (undefined when relayed). */
  args: unknown[] | undefined;
  payload: Uint8Array;
  metadata: Readonly<Record<string, string>>;
  /** Relayed from the registry face: the reply goes back as bytes. */
  raw: boolean;
  idleTimeoutMs: number | undefined;
}

/**
 * The controller of one service, in the process that launched it (TorchForge's Service):
 * places and supervises replicas, routes calls, keeps sessions, answers the registry (as the
 * service's owner instance), its status subject and $SRV.
 */
export interface ServiceController {
  readonly name: string;
  readonly namespace: string;
  readonly id: string;
  call(method: string, args: unknown[], opts?: RouteOptions): Promise<unknown>;
  fanout(method: string, args: unknown[], opts?: RouteOptions): Promise<unknown[]>;
  openSession(rebind: boolean): SessionState;
  closeSession(s: SessionState): void;
  report(): ServiceReport;
  shutdown(): Promise<void>;
}

const REPLICA_REF = Symbol.for("actorbus.replicaRef");

export function isReplicaRef(v: unknown): v is ReplicaRef {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[REPLICA_REF] === true;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export async function launchService(p: ControllerParams): Promise<ServiceController> {
  const { options: o } = p;
  const ownsServices = !o.services;
  const services: Services = o.services ?? (await getServices({ namespace: o.namespace ?? "default", servers: o.servers }));
  try {
    return await startController(p, services, ownsServices);
  } catch (err) {
    if (ownsServices) await services.close().catch(() => {});
    throw err;
  }
}

async function startController(p: ControllerParams, services: Services, ownsServices: boolean): Promise<ServiceController> {
  const { options: o, name, cls } = p;
  const conn = services.connection;
  if (conn.backend !== "nats" || !conn.nc) {
    throw new InvalidOptionsError(`${cls.name}.asService() needs the NATS backend: replicas run in their own processes and reach the caller over NATS`);
  }
  const subjects = subjectsFor(services.namespace);
  const { codec, transport } = conn;
  const controlTimeoutMs = 2_000;
  const capacity = o.maxConcurrency + o.maxPending;
  const methods = declaredMethods(p.base);

  // Where the replicas go: agents when there are any (or required), else this machine.
  const req = { procs: o.procs, hosts: o.hosts, withGpus: o.withGpus };
  const { launcher, plan } = await chooseLauncher({ conn, subjects, options: o, service: name, controlTimeoutMs, onExit: (ev) => onProcExit(ev) });

  let state: "running" | "stopping" | "stopped" = "running";
  let controllerId = "";
  const startedAt = new Date().toISOString();
  const replicas: Replica[] = Array.from({ length: o.numReplicas }, (_, index) => createReplica(index));
  const procOwner = new Map<string, Replica>();
  const methodStats = new Map<string, { requests: number; errors: number; lastError: string; ns: number }>();
  let rr = 0;
  let waiting = 0;
  const changeWaiters = new Set<() => void>();
  const notifyChange = () => {
    for (const w of [...changeWaiters]) w();
  };

  const closedError = () => new ClosedError(`service "${name}" is shut down`, { details: { service: name } });

  const waitForChange = (deadline: number, what: string, signal: AbortSignal | undefined) =>
    new Promise<void>((resolve, reject) => {
      const timedOut = () => new CallTimeoutError(`no healthy replica of "${name}" within the call's deadline (${what})`, { details: { service: name } });
      const left = deadline - Date.now();
      if (left <= 0) return reject(timedOut());
      const done = (err?: Error) => {
        clearTimeout(timer);
        changeWaiters.delete(onChange);
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onChange = () => done();
      const onAbort = () => done(abortError(signal!, subjects.call(name)));
      const timer = setTimeout(() => done(timedOut()), left);
      changeWaiters.add(onChange);
      signal?.addEventListener("abort", onAbort, { once: true });
    });

  const describeStates = () => replicas.map((r) => `#${r.index} ${r.state}${r.lastError ? ` (${r.lastError})` : ""}`).join(", ");

  const crashError = (r: Replica, reason: string) =>
    new ReplicaCrashedError(`replica ${r.index} of "${name}" crashed (${reason}); the call may or may not have run`, {
      details: { service: name, replica: r.index, reason },
    });

  const stopProcs = async (procs: ProcInfo[], graceMs: number) => {
    const byHost = new Map<string, string[]>();
    for (const pr of procs) {
      let ids = byHost.get(pr.hostId);
      if (!ids) byHost.set(pr.hostId, (ids = []));
      ids.push(pr.procId);
    }
    await Promise.all([...byHost].map(([hostId, ids]) => launcher.stop(hostId, ids, graceMs).catch(() => {})));
  };

  // --- supervision ------------------------------------------------------------------------

  const replicaFailed = (r: Replica, generation: number, reason: string) => {
    if (r.generation !== generation || r.state !== "healthy") return;
    r.generation++;
    r.suspect = false;
    r.missed = 0;
    r.state = "recovering";
    r.lastError = reason;
    r.sessions = 0; // their state died with the process: sessions learn it on their next call
    const err = crashError(r, reason);
    for (const f of [...r.inflight]) f.fail(err);
    const survivors = r.procs;
    r.procs = [];
    r.subjects = [];
    void stopProcs(survivors, 0);
    if (Date.now() - r.healthySince >= o.stableMs) r.restarts = 0;
    notifyChange();
    void restartLoop(r);
  };

  const restartLoop = async (r: Replica) => {
    while (state === "running") {
      if (r.restarts >= o.maxRestarts) {
        r.state = "failed";
        notifyChange();
        return;
      }
      const delay = Math.min(o.maxBackoffMs, o.restartBackoffMs * 2 ** r.restarts);
      r.restarts++;
      r.totalRestarts++;
      await sleep(delay);
      if (state !== "running") return;
      try {
        await startReplica(r, undefined, r.totalRestarts);
        return;
      } catch (err) {
        if (state !== "running") return;
        r.state = "recovering";
        r.lastError = `restart failed: ${errText(err)}`;
      }
    }
  };

  const onProcExit = (ev: ProcExitEvent) => {
    const r = procOwner.get(ev.procId);
    procOwner.delete(ev.procId);
    if (!r) return;
    const why = `process ${ev.pid} on ${ev.hostId} exited with ${ev.signal ?? `code ${ev.code}`}`;
    if (r.state === "healthy" && r.groupId === ev.groupId) replicaFailed(r, r.generation, why);
    else r.startFailure.set(ev.groupId, why);
  };

  const startReplica = async (r: Replica, placement: ReplicaPlacement | undefined, attempt: number) => {
    const where = placement ?? placeReplica(await launcher.capacity(), req, `replica ${r.index} of "${name}"`, r.hosts);
    let spawned: ProcInfo[] | undefined;
    let groupId = "";
    const ctx: LaunchContext = {
      service: name,
      namespace: services.namespace,
      replicaIndex: r.index,
      attempt,
      options: { ...o, services: undefined } as LaunchContext["options"],
      args: p.args,
      placement: where,
      async spawn(args = p.args) {
        if (groupId) throw new InvalidOptionsError(`${cls.name}.launch() called ctx.spawn() twice for one replica`);
        groupId = nuid.next();
        const specFor = (rank: number): ProcSpec => ({
          namespace: services.namespace,
          service: name,
          controllerId,
          groupId,
          procId: `${groupId}-${rank}`,
          rank,
          size: o.procs,
          moduleUrl: p.ref.moduleUrl,
          exportName: p.ref.exportName,
          args: [...args],
          actor: { maxConcurrency: o.maxConcurrency, maxPending: o.maxPending, timeoutMs: o.timeoutMs, drainTimeoutMs: o.drainTimeoutMs },
          queueGroup: o.routing === "queue-group",
          gpu: o.withGpus,
          env: o.env,
          label: `${name}#${r.index}.${rank}`,
        });
        for (const h of where) for (const rank of h.ranks) procOwner.set(`${groupId}-${rank}`, r);
        const results = await Promise.allSettled(where.map((h) => launcher.spawn(h.hostId, h.ranks.map(specFor), o.startTimeoutMs)));
        const started = results.flatMap((x) => (x.status === "fulfilled" ? x.value : []));
        const failed = results.find((x) => x.status === "rejected") as PromiseRejectedResult | undefined;
        if (failed) {
          await stopProcs(started, 0);
          throw failed.reason;
        }
        spawned = started.sort((a, b) => a.rank - b.rank);
      },
    };
    try {
      await cls.launch(ctx);
      if (!spawned) throw new InvalidOptionsError(`${cls.name}.launch() returned without calling ctx.spawn(): the replica has no processes`);
      const died = r.startFailure.get(groupId);
      if (died) throw new ReplicaCrashedError(`replica ${r.index} of "${name}" died while starting: ${died}`);
      if (state !== "running") throw closedError();
    } catch (err) {
      if (spawned) await stopProcs(spawned, 0);
      r.startFailure.delete(groupId);
      throw err;
    }
    r.startFailure.clear();
    r.groupId = groupId;
    r.procs = spawned;
    r.subjects = spawned.map((x) => subjects.replica(groupId, x.rank));
    r.hosts = [...new Set(spawned.map((x) => x.hostId))];
    r.state = "healthy";
    r.healthySince = Date.now();
    notifyChange();
  };

  // The backstop to exit events: a process that left NATS (its agent died with it, or the event
  // was lost) shows up as no-responders on its instance subject. Two misses in a row make a
  // death, so a process reconnecting to NATS is not killed for one unlucky ping.
  const probe = (r: Replica) => {
    if (r.state !== "healthy" || r.pinging) return;
    r.pinging = true;
    const gen = r.generation;
    const procs = r.procs;
    Promise.all(procs.map((x) => pingInstance(conn, subjects, x.procId, Math.max(controlTimeoutMs, 2 * o.healthIntervalMs))))
      .then((states) => {
        if (r.generation !== gen) return;
        const dead = states.findIndex((st) => st === "dead");
        if (dead < 0) {
          r.missed = 0;
          if (r.suspect) {
            r.suspect = false;
            notifyChange();
          }
          return;
        }
        if (++r.missed >= 2) replicaFailed(r, gen, `process ${procs[dead]!.pid} on ${procs[dead]!.hostId} stopped answering heartbeats`);
        else if (r.suspect) setTimeout(() => probe(r), 250).unref();
      })
      .finally(() => (r.pinging = false));
  };
  const heartbeat = () => {
    for (const r of replicas) probe(r);
  };

  // --- routing ----------------------------------------------------------------------------

  const overloaded = () => {
    const busy = replicas.filter((r) => r.state === "healthy" && !r.suspect).map((r) => r.outstanding);
    return new OverloadedError(
      `every replica of "${name}" is saturated (${busy.join(", ")} outstanding; maxConcurrency ${o.maxConcurrency} + maxPending ${o.maxPending} each); retry with backoff or add replicas`,
      { details: { service: name, outstanding: busy, capacity } },
    );
  };

  const unavailable = () =>
    new ServiceUnavailableError(`no replica of "${name}" can take calls: ${describeStates()}`, { details: { service: name } });

  /** Waits (bounded by the deadline and the call's signal) while replicas are starting or restarting. */
  const awaitReplica = async (out: Outgoing, choose: () => Replica | undefined): Promise<Replica> => {
    for (;;) {
      if (state !== "running") throw closedError();
      if (out.signal?.aborted) throw abortError(out.signal, subjects.call(name));
      const r = choose();
      if (r) return r;
      if (replicas.some((x) => x.state === "healthy" && !x.suspect)) throw overloaded();
      // Worth waiting for: replicas (re)starting, or reachable again after a NATS reconnect.
      if (!replicas.some((x) => x.state === "starting" || x.state === "recovering" || (x.state === "healthy" && x.suspect))) throw unavailable();
      if (waiting >= o.numReplicas * Math.max(1, capacity)) throw overloaded();
      waiting++;
      try {
        await waitForChange(out.deadline, describeStates(), out.signal);
      } finally {
        waiting--;
      }
    }
  };

  const router = createRouter<Replica>(o.router, { capacity, usable: (r) => r.state === "healthy" && !r.suspect });
  const routeRequest = (out: Outgoing, session: boolean): RouteRequest =>
    router.readsCall ? { method: out.method, args: out.args ?? [], metadata: out.metadata, session } : session ? SESSION_CALL : ANY_CALL;
  const pick = (out: Outgoing, session = false) => router.pick(replicas, routeRequest(out, session));

  const sessionLost = (s: SessionState, r: Replica) =>
    new SessionLostError(
      `session ${s.id} was bound to replica ${r.index} of "${name}", which died (${r.lastError || "stopped"}): the state it held is lost; start a new session, or open sessions with { rebind: true }`,
      { details: { service: name, session: s.id, replica: r.index } },
    );

  const sessionReplica = async (s: SessionState, out: Outgoing): Promise<Replica> => {
    if (s.closed) throw new ClosedError(`session ${s.id} of "${name}" has ended`);
    const bound = s.replica;
    if (bound) {
      if (bound.generation === s.generation && bound.state === "healthy") {
        if (bound.outstanding >= capacity) throw overloaded();
        return bound;
      }
      if (!s.rebind) throw sessionLost(s, bound);
      if (bound.generation === s.generation) bound.sessions--;
      s.replica = undefined;
    }
    const r = await awaitReplica(out, () => pick(out, true));
    // Another call of this session may have bound it while we waited.
    if (s.replica) return sessionReplica(s, out);
    s.replica = r;
    s.generation = r.generation;
    r.sessions++;
    return r;
  };

  const onUnavailable = (r: Replica, gen: number, err: ServiceUnavailableError): Error => {
    // No responders on a replica's own subject: its process is gone (the exit event is on its
    // way) or reconnecting to NATS. Route around it until a heartbeat tells which.
    if (r.generation === gen && r.state === "healthy" && !r.suspect) {
      r.suspect = true;
      probe(r);
    }
    return crashError(r, `nobody listens on ${(err.details.subject as string) ?? "its subject"}: process gone or disconnected`);
  };

  /**
   * Sends the call to every process of the replica (rank 0's reply is the result). The same
   * encoded arguments and call id go to each: a cancel reaches whichever holds it.
   */
  const sendTo = (r: Replica, out: Outgoing, allRanks: boolean): Promise<unknown> => {
    const targets = r.subjects;
    return new Promise<unknown>((resolve, reject) => {
      const c = new RoutedCall(r, codec, allRanks, out.raw, resolve, reject, onUnavailable);
      if (targets.length === 1) {
        requestCall(transport, subjects, targets[0]!, out.payload, out).then(
          (b) => c.reply(b),
          (e) => c.error(e),
        );
      } else {
        Promise.all(targets.map((t) => requestCall(transport, subjects, t, out.payload, out))).then(
          (bs) => c.replies(bs),
          (e) => c.error(e),
        );
      }
    });
  };

  const recordMethod = (method: string, t0: number, err?: unknown) => {
    let m = methodStats.get(method);
    if (!m) methodStats.set(method, (m = { requests: 0, errors: 0, lastError: "", ns: 0 }));
    m.requests++;
    m.ns += (performance.now() - t0) * 1e6;
    if (err !== undefined) {
      m.errors++;
      m.lastError = errText(err);
    }
  };

  /** A streaming method's opening becomes the caller's pulling iterator (relays pass it on as bytes). */
  const succeeded = (out: Outgoing, t0: number, v: unknown): unknown => {
    recordMethod(out.method, t0);
    return out.raw ? v : materialize(v, transport, codec, `${name}.${out.method}`, out.signal, out.idleTimeoutMs);
  };

  /**
   * After a crash of the replica that had the call: another attempt, or the caller's error.
   * A retry never starts once the caller's deadline has passed or its signal fired.
   */
  const afterFailure = (err: unknown, r: Replica, out: Outgoing, opts: RouteOptions | undefined, t0: number, retries: number): Promise<unknown> => {
    if (err instanceof ReplicaCrashedError && state === "running") {
      const s = opts?.session;
      if (s && !s.rebind) {
        // The session's state is gone only if its replica really died (not merely unreachable).
        if (s.replica === r && (r.generation !== s.generation || r.state !== "healthy")) err = sessionLost(s, r);
      } else if (retries < o.maxTaskRetries && Date.now() < out.deadline && !out.signal?.aborted) {
        return attempt(out, opts, t0, retries + 1);
      }
    }
    recordMethod(out.method, t0, err);
    return Promise.reject(err);
  };

  const attempt = async (out: Outgoing, opts: RouteOptions | undefined, t0: number, retries: number): Promise<unknown> => {
    let r: Replica;
    try {
      r = opts?.session ? await sessionReplica(opts.session, out) : await awaitReplica(out, () => pick(out));
    } catch (err) {
      recordMethod(out.method, t0, err);
      throw err;
    }
    return sendTo(r, out, opts?.ranks === true).then(
      (v) => succeeded(out, t0, v),
      (err) => afterFailure(err, r, out, opts, t0, retries),
    );
  };

  const nextCallId = createCallIds();

  /** A call from this process (service proxy, session, endpoint form): arguments encoded once. */
  const outgoing = (method: string, args: unknown[], opts: RouteOptions | undefined): Outgoing => {
    const st = callSettings(o.timeoutMs, opts?.call);
    return {
      method,
      args,
      payload: codec.encode(args),
      callId: nextCallId(),
      deadline: st.deadline,
      meta: st.meta,
      metadata: opts?.call?.metadata ?? NO_METADATA,
      signal: st.signal,
      raw: false,
      idleTimeoutMs: opts?.call?.idleTimeoutMs,
    };
  };

  /**
   * A call relayed from the service's registry face: its bytes, call id, deadline, metadata and
   * cancellation pass on untouched; the reply bytes go back the same way.
   */
  const relayed = (job: HostedCall, payload: Uint8Array): Outgoing => ({
    method: job.method,
    args: undefined,
    payload,
    callId: job.callId,
    deadline: job.deadline,
    meta: job.metaHeader || undefined,
    metadata: job.metadata,
    signal: job.signal,
    raw: true,
    idleTimeoutMs: undefined,
  });

  // The common case (a healthy replica with room, no session, a built-in router) stays
  // synchronous up to the request: no extra promise hops in the path every call takes.
  const route = (out: Outgoing, opts?: RouteOptions): Promise<unknown> => {
    if (state !== "running") return Promise.reject(closedError());
    const t0 = performance.now();
    const r = opts?.session || router.readsCall ? undefined : pick(out);
    if (!r) return attempt(out, opts, t0, 0);
    return sendTo(r, out, opts?.ranks === true).then(
      (v) => succeeded(out, t0, v),
      (err) => afterFailure(err, r, out, opts, t0, 0),
    );
  };

  const call = (method: string, args: unknown[], opts?: RouteOptions): Promise<unknown> => {
    let out: Outgoing;
    try {
      out = outgoing(method, args, opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return route(out, opts);
  };

  // Queue-group routing: NATS picks a replica. No per-replica accounting, so a crash cannot
  // fail its calls early: they run into their deadlines (the benchmark's comparison).
  const sendQueueGroup = async (out: Outgoing): Promise<unknown> => {
    if (state !== "running") throw closedError();
    const t0 = performance.now();
    try {
      const bytes = await requestCall(transport, subjects, subjects.replicaQueue(name), out.payload, out);
      return succeeded(out, t0, out.raw ? bytes : unwrapReply<unknown>(codec, bytes));
    } catch (err) {
      recordMethod(out.method, t0, err);
      throw err;
    }
  };
  const viaQueueGroup = (opts: RouteOptions | undefined) => o.routing === "queue-group" && !opts?.session && !opts?.ranks;

  const fanout = async (method: string, args: unknown[], opts?: RouteOptions): Promise<unknown[]> => {
    if (state !== "running") throw closedError();
    const t0 = performance.now();
    const out = outgoing(method, args, opts);
    try {
      await awaitReplica(out, () => replicas.find((r) => r.state === "healthy"));
      const healthy = replicas.filter((r) => r.state === "healthy");
      const results = await Promise.all(healthy.map((r) => sendTo(r, out, false)));
      recordMethod(method, t0);
      return results;
    } catch (err) {
      recordMethod(method, t0, err);
      throw err;
    }
  };

  // --- reports --------------------------------------------------------------------------

  const report = (): ServiceReport => ({
    name,
    namespace: services.namespace,
    className: p.base.name,
    controllerId,
    placement: launcher.mode,
    routing: o.routing,
    startedAt,
    state,
    options: {
      numReplicas: o.numReplicas,
      procs: o.procs,
      hosts: o.hosts,
      withGpus: o.withGpus,
      maxConcurrency: o.maxConcurrency,
      maxPending: o.maxPending,
      maxRestarts: o.maxRestarts,
      maxTaskRetries: o.maxTaskRetries,
      timeoutMs: o.timeoutMs,
    },
    sessions: replicas.reduce((n, r) => n + r.sessions, 0),
    replicas: replicas.map((r): ReplicaReport => {
      const s = r.stats.snapshot(r.outstanding, 0);
      return {
        index: r.index,
        state: r.state,
        groupId: r.groupId,
        hosts: r.hosts,
        pids: r.procs.map((x) => x.pid),
        inflight: r.outstanding,
        calls: s.calls,
        errors: s.errors,
        p50Ms: s.p50Ms,
        p99Ms: s.p99Ms,
        restarts: r.totalRestarts,
        sessions: r.sessions,
        lastError: r.lastError,
      };
    }),
  });

  const microEndpoints = (): MicroEndpointStats[] =>
    methods.map((m) => {
      const s = methodStats.get(m);
      return { name: m, subject: subjects.call(name), requests: s?.requests ?? 0, errors: s?.errors ?? 0, lastError: s?.lastError ?? "", processingTimeNs: s?.ns ?? 0 };
    });

  // --- registration: the controller is the registry's owner instance of the service ---------

  let shutdownPromise: Promise<void> | undefined;
  const relay = (job: HostedCall, payload: Uint8Array): Promise<Uint8Array> => {
    const out = relayed(job, payload);
    return (viaQueueGroup(undefined) ? sendQueueGroup(out) : route(out)) as Promise<Uint8Array>;
  };
  const Forwarder = forwarderClass(p.base.name, methods, relay, () => (shutdownPromise ? undefined : shutdown(true)));
  try {
    await services.registerWithOptions(name, Forwarder, {
      // The router bounds calls per replica; the forwarder only relays them.
      maxConcurrency: 1_000_000,
      maxPending: 0,
      timeoutMs: o.timeoutMs,
      drainTimeoutMs: o.drainTimeoutMs,
      metadata: { ...o.metadata, kind: "service", replicas: String(o.numReplicas), procs: String(o.procs), module: p.ref.moduleUrl },
    });
  } catch (err) {
    if (err instanceof ServiceExistsError) {
      err.message += `; pass { meshName: "another-name" } to options() to run another ${cls.name} service`;
    }
    throw err;
  }
  const record = await services.describe(name);
  controllerId = record?.owner.instanceId ?? nuid.next();

  const subs: Subscription[] = [];
  subs.push(transport.subscribe(subjects.events(controllerId), (msg: Inbound) => {
    try {
      onProcExit(codec.decode<ProcExitEvent>(msg.data));
    } catch {
      // not an event of ours
    }
  }));
  subs.push(transport.subscribe(subjects.controller(name), (msg: Inbound) => {
    if (msg.reply) msg.respond(encodeOk(codec, report()));
  }));
  const micro: MicroResponder = serveMicro({
    conn,
    name,
    id: controllerId,
    version: o.version,
    description: o.description || `${p.base.name} (${o.numReplicas} replica${o.numReplicas === 1 ? "" : "s"}) in namespace ${services.namespace}`,
    metadata: { ...o.metadata, namespace: services.namespace, class: p.base.name, replicas: String(o.numReplicas) },
    startedAt,
    endpoints: microEndpoints,
  });
  await transport.flush();
  const healthTimer = setInterval(heartbeat, o.healthIntervalMs);
  healthTimer.unref();

  const replicaRef = (r: Replica): ReplicaRef => {
    const procs = r.procs;
    return {
      [REPLICA_REF]: true,
      service: name,
      index: r.index,
      hosts: [...r.hosts],
      pids: procs.map((x) => x.pid),
      stop: (graceMs = o.drainTimeoutMs) => stopProcs(procs, graceMs),
    } as ReplicaRef;
  };

  const shutdown = (fromRegistry = false): Promise<void> => {
    shutdownPromise ??= (async () => {
      state = "stopping";
      notifyChange();
      clearInterval(healthTimer);
      const inflight = () => replicas.reduce((n, r) => n + r.inflight.size, 0);
      const end = Date.now() + o.drainTimeoutMs;
      while (inflight() > 0 && Date.now() < end) await sleep(5);
      const late = new ServiceUnavailableError(`service "${name}" shut down before the call finished`, { details: { service: name } });
      for (const r of replicas) for (const f of [...r.inflight]) f.fail(late);
      for (const s of subs.splice(0)) s.unsubscribe();
      micro.stop();
      await Promise.all(
        replicas.map(async (r) => {
          if (r.procs.length === 0) return;
          try {
            await cls.shutdown(replicaRef(r));
          } catch {
            await stopProcs(r.procs, 0);
          }
        }),
      );
      await launcher.close(o.drainTimeoutMs);
      for (const r of replicas) {
        r.state = "stopped";
        r.procs = [];
        r.subjects = [];
      }
      state = "stopped";
      if (!fromRegistry) {
        await services.remove(name).catch(() => {});
        if (ownsServices) await services.close().catch(() => {});
      }
    })();
    // A registry-initiated stop runs inside the registry's own teardown of our forwarder, which
    // close() would wait for: close afterwards.
    if (fromRegistry && ownsServices) void shutdownPromise.then(() => services.close()).catch(() => {});
    return shutdownPromise;
  };

  const controller: ServiceController = {
    name,
    namespace: services.namespace,
    get id() {
      return controllerId;
    },
    call: (m, a, opts) => {
      if (!viaQueueGroup(opts)) return call(m, a, opts);
      try {
        return sendQueueGroup(outgoing(m, a, opts));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    fanout,
    openSession: (rebind) => ({ id: nuid.next(), rebind, replica: undefined, generation: -1, closed: false }),
    closeSession(s) {
      if (s.closed) return;
      s.closed = true;
      if (s.replica && s.replica.generation === s.generation) s.replica.sessions--;
      s.replica = undefined;
    },
    report,
    shutdown: () => shutdown(false),
  };

  // Every replica up, or nothing left behind.
  const results = await Promise.allSettled(replicas.map((r, i) => startReplica(r, plan[i], 0)));
  const failed = results.findIndex((x) => x.status === "rejected");
  if (failed >= 0) {
    const err = (results[failed] as PromiseRejectedResult).reason;
    await shutdown(false);
    if (err instanceof ActorBusError || err instanceof Error) {
      err.message = `replica ${failed} of "${name}" failed to start: ${err.message}`;
      throw err;
    }
    throw new ActorBusError(`replica ${failed} of "${name}" failed to start: ${String(err)}`);
  }
  return controller;
}
