import { nuid } from "@nats-io/transport-node";
import { requestCall, type HostedCall, type OutgoingCall, type Relay } from "../actor/index.ts";
import { callSettings, createCallIds, parseMinVersion, parseRolling, type ResolvedCallOptions, type ResolvedRollingOptions } from "../call/index.ts";
import { chunksOf, isChunkRef } from "../chunks/index.ts";
import type { Codec } from "../codec/index.ts";
import { abortError, type BusConnection } from "../connection/index.ts";
import { CallTimeoutError, ClosedError, InvalidOptionsError, OverloadedError, ReplicaCrashedError, ServiceUnavailableError } from "../errors/index.ts";
import { unwrapReply } from "../reply/index.ts";
import { materialize } from "../stream/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { clientSpan, endSpan, tracerSource, type TraceTarget } from "../tracing/index.ts";
import { closedError, describeStates, type ControllerState } from "./controller-state.ts";
import { SessionLostError } from "./errors.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { NO_CALL_OUTCOMES, type CallOutcomes } from "./outlier-ejection.ts";
import { errText, type Inflight, type Replica } from "./replica-state.ts";
import { ANY_CALL, createRouter, NO_METADATA, SESSION_CALL, type RouteRequest } from "./router.ts";
import type { ReplicaVersions } from "./versions.ts";

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

/**
 * The calls of a service on their way to its replicas: from the service proxy, sessions and
 * endpoint forms, and relayed from its registry face. Picks a replica (the router), waits for
 * one within the call's deadline while replicas start, keeps sessions on theirs, retries on
 * another after a crash (never past the deadline), or leaves the pick to a NATS queue group.
 */
export interface RoutedCalls {
  call(method: string, args: unknown[], opts?: RouteOptions): Promise<unknown>;
  fanout(method: string, args: unknown[], opts?: RouteOptions): Promise<unknown[]>;
  /** The registry face's calls: their bytes go to a replica and the reply's bytes come back. */
  relay: Relay;
  /** One call encoded once, for replicas chosen elsewhere (rolling updates): no routing, no retries. */
  prepare(method: string, args: unknown[], call: ResolvedCallOptions | undefined, rolling: ResolvedRollingOptions): PreparedCall;
  /** The same for a relayed call's bytes (a roll asked for through the registry); replies stay bytes. */
  prepareRelayed(job: HostedCall, payload: Uint8Array): PreparedCall;
  openSession(rebind: boolean): SessionState;
  closeSession(s: SessionState): void;
  /** Lets the calls in flight finish for up to drainTimeoutMs, then fails the rest. */
  drain(): Promise<void>;
}

/** A call to send to chosen replicas, one by one (rolling.ts). */
export interface PreparedCall {
  readonly method: string;
  /** Epoch ms: the whole roll's deadline. */
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /** Sends it to every process of `r`, whether or not `r` is in routing; rank 0's result. */
  send(r: Replica): Promise<unknown>;
}

export interface RoutedCallsParams {
  state: ControllerState;
  conn: BusConnection;
  subjects: Subjects;
  options: ResolvedServiceOptions;
  recordMethod(method: string, t0: number, err?: unknown): void;
  /** What a call that found nobody on a replica's subject fails with (and what it does to the replica). */
  unreachable(r: Replica, generation: number, err: ServiceUnavailableError): Error;
  /** The replicas' versions, for calls with minVersion. */
  versions: ReplicaVersions;
  /** Runs a rolling update a relayed call asks for (header Ab-Rolling). */
  rollRelayed(job: HostedCall, payload: Uint8Array, options: ResolvedRollingOptions): Promise<Uint8Array>;
  /** Told whether each call was answered or timed out (outlier ejection). */
  outcomes?: CallOutcomes;
}

/** One call on its way to a replica: encoded once, whatever the attempts and targets. */
interface Outgoing extends OutgoingCall {
  /** The decoded arguments, for routers that read the call (undefined when relayed). */
  args: unknown[] | undefined;
  /** The call this one relays: its cancellation is passed on to wherever this one goes. */
  relayedFrom?: HostedCall;
  payload: Uint8Array;
  /** The arguments wait in the chunk store under this id (src/chunks) until the call settles. */
  chunkId?: string | undefined;
  metadata: Readonly<Record<string, string>>;
  /** Relayed from the registry face: the reply goes back as bytes. */
  raw: boolean;
  idleTimeoutMs: number | undefined;
  /** Only replicas at or above this version take it (withOptions minVersion, or Ab-Min-Version). */
  minVersion: number | undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function createRoutedCalls(p: RoutedCallsParams): RoutedCalls {
  const { state: s, conn, subjects, options: o, recordMethod, unreachable, versions } = p;
  const outcomes = p.outcomes ?? NO_CALL_OUTCOMES;
  const { name, replicas } = s;
  const { codec, transport } = conn;
  const chunks = chunksOf(conn);
  const capacity = o.maxConcurrency + o.maxPending;
  let waiting = 0;
  const tracer = tracerSource();
  const traced: TraceTarget = { namespace: subjects.namespace, service: name, subject: subjects.call(name) };

  const waitForChange = (deadline: number, what: string, signal: AbortSignal | undefined, minVersion?: number) =>
    new Promise<void>((resolve, reject) => {
      const timedOut = () =>
        minVersion !== undefined ? versions.unavailable(minVersion) : new CallTimeoutError(`no healthy replica of "${name}" within the call's deadline (${what})`, { details: { service: name } });
      const left = deadline - Date.now();
      if (left <= 0) return reject(timedOut());
      const done = (err?: Error) => {
        clearTimeout(timer);
        s.changeWaiters.delete(onChange);
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onChange = () => done();
      const onAbort = () => done(abortError(signal!, subjects.call(name)));
      const timer = setTimeout(() => done(timedOut()), left);
      s.changeWaiters.add(onChange);
      signal?.addEventListener("abort", onAbort, { once: true });
    });

  const overloaded = () => {
    const busy = replicas.filter((r) => r.state === "healthy" && !r.suspect).map((r) => r.outstanding);
    return new OverloadedError(
      `every replica of "${name}" is saturated (${busy.join(", ")} outstanding; maxConcurrency ${o.maxConcurrency} + maxPending ${o.maxPending} each); retry with backoff or add replicas`,
      { details: { service: name, outstanding: busy, capacity } },
    );
  };

  const unavailable = () =>
    new ServiceUnavailableError(`no replica of "${name}" can take calls: ${describeStates(s)}`, { details: { service: name } });

  // A relayed call's caller times out at the same deadline as a wait here: a wait for a version
  // (or a relayed roll) ends a little earlier, so that its typed error reaches the caller before
  // the caller's own timer turns it into a plain CallTimeoutError.
  const answerBy = (deadline: number) => deadline - Math.min(50, Math.max(0, (deadline - Date.now()) / 10));
  const waitDeadline = (out: Outgoing) => (out.raw && out.minVersion !== undefined ? answerBy(out.deadline) : out.deadline);

  /** Waits (bounded by the deadline and the call's signal) while replicas are starting or restarting. */
  const awaitReplica = async (out: Outgoing, choose: () => Replica | undefined): Promise<Replica> => {
    for (;;) {
      if (s.state !== "running") throw closedError(s);
      if (out.signal?.aborted) throw abortError(out.signal, subjects.call(name));
      const r = choose();
      if (r) return r;
      if (replicas.some((x) => usable(x) && versions.admits(x, out.minVersion))) throw overloaded();
      // Worth waiting for: replicas (re)starting, reachable again after a NATS reconnect, back
      // from a rolling update, or (for minVersion) reaching the version asked for.
      const healthy = (x: Replica) => x.state === "healthy" && (x.suspect || x.updating || x.ejected || out.minVersion !== undefined);
      if (!replicas.some((x) => x.state === "starting" || x.state === "recovering" || healthy(x))) throw unavailable();
      if (waiting >= o.numReplicas * Math.max(1, capacity)) throw overloaded();
      waiting++;
      try {
        await waitForChange(waitDeadline(out), describeStates(s), out.signal, out.minVersion);
      } finally {
        waiting--;
      }
    }
  };

  // A replica mid-update (rolling.ts) takes no calls; minVersion narrows the candidates.
  const usable = (r: Replica) => r.state === "healthy" && !r.suspect && !r.updating && !r.ejected;
  const router = createRouter<Replica>(o.router, { capacity, usable });
  const routeRequest = (out: Outgoing, session: boolean): RouteRequest =>
    router.readsCall ? { method: out.method, args: out.args ?? [], metadata: out.metadata, session } : session ? SESSION_CALL : ANY_CALL;
  const pick = (out: Outgoing, session = false) =>
    router.pick(out.minVersion === undefined ? replicas : versions.eligible(replicas, out.minVersion), routeRequest(out, session));

  const sessionLost = (ss: SessionState, r: Replica) =>
    new SessionLostError(
      `session ${ss.id} was bound to replica ${r.index} of "${name}", which died (${r.lastError || "stopped"}): the state it held is lost; start a new session, or open sessions with { rebind: true }`,
      { details: { service: name, session: ss.id, replica: r.index } },
    );

  const sessionReplica = async (ss: SessionState, out: Outgoing): Promise<Replica> => {
    if (ss.closed) throw new ClosedError(`session ${ss.id} of "${name}" has ended`);
    const bound = ss.replica;
    if (bound) {
      if (bound.generation === ss.generation && bound.state === "healthy") {
        // Mid-update, or below the version asked for: the session waits for its replica.
        if (bound.updating || !versions.admits(bound, out.minVersion)) {
          await waitForChange(waitDeadline(out), `session ${ss.id}'s replica ${bound.index} ${bound.updating ? "is being updated" : "is below the version asked for"}`, out.signal, bound.updating ? undefined : out.minVersion);
          return sessionReplica(ss, out);
        }
        if (bound.outstanding >= capacity) throw overloaded();
        return bound;
      }
      if (!ss.rebind) throw sessionLost(ss, bound);
      if (bound.generation === ss.generation) bound.sessions--;
      ss.replica = undefined;
    }
    const r = await awaitReplica(out, () => pick(out, true));
    // Another call of this session may have bound it while we waited.
    if (ss.replica) return sessionReplica(ss, out);
    ss.replica = r;
    ss.generation = r.generation;
    r.sessions++;
    return r;
  };

  /**
   * Sends the call to every process of the replica (rank 0's reply is the result). The same
   * encoded arguments and call id go to each: a cancel reaches whichever holds it.
   */
  const sendTo = (r: Replica, out: Outgoing, allRanks: boolean, attempt = 0): Promise<unknown> => {
    const targets = r.subjects;
    if (out.relayedFrom) relayCancels(out.relayedFrom, out.callId, targets);
    // Each attempt is a CLIENT span of its own, carried to the replica in place of the caller's.
    const span = clientSpan(tracer, traced, out.method, out.callId, attempt, r.index);
    if (span) out = { ...out, trace: span };
    return endSpan(span, new Promise<unknown>((resolve, reject) => {
      const c = new RoutedCall(r, codec, allRanks, out.raw, resolve, reject, unreachable, outcomes);
      if (targets.length === 1) {
        requestCall(transport, subjects, targets[0]!, out.payload, out).then(
          // A result in chunks is pulled here; a relay passes its ref on as bytes.
          (b) => (out.raw || !isChunkRef(b) ? c.reply(b) : pullResult(b, out).then((full) => c.reply(full), (e) => c.pullFailed(e))),
          (e) => c.error(e),
        );
      } else {
        Promise.all(targets.map((t) => requestCall(transport, subjects, t, out.payload, out))).then(
          (bs) => (out.raw || !bs.some(isChunkRef) ? c.replies(bs) : Promise.all(bs.map((b) => pullResult(b, out))).then((full) => c.replies(full), (e) => c.pullFailed(e))),
          (e) => c.error(e),
        );
      }
    }), out.raw ? codec : undefined);
  };

  const pullResult = (bytes: Uint8Array, out: Outgoing) => chunks.resolve(bytes, out.deadline, out.signal, `the result of ${name}.${out.method}`);

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
    if (err instanceof ReplicaCrashedError && s.state === "running") {
      const ss = opts?.session;
      if (ss && !ss.rebind) {
        // The session's state is gone only if its replica really died (not merely unreachable).
        if (ss.replica === r && (r.generation !== ss.generation || r.state !== "healthy")) err = sessionLost(ss, r);
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
    return sendTo(r, out, opts?.ranks === true, retries).then(
      (v) => succeeded(out, t0, v),
      (err) => afterFailure(err, r, out, opts, t0, retries),
    );
  };

  const nextCallId = createCallIds();

  /** A call from this process (service proxy, session, endpoint form): arguments encoded once. */
  const outgoing = (method: string, args: unknown[], opts: RouteOptions | undefined): Outgoing => {
    const st = callSettings(o.timeoutMs, opts?.call);
    // Large arguments are encoded and stored once, whatever the retries and replicas (fanout).
    const enc = chunks.encode(args, subjects, st.deadline, Infinity);
    return {
      method,
      args,
      payload: enc.payload,
      chunkId: enc.id,
      callId: nextCallId(),
      deadline: st.deadline,
      meta: st.meta,
      metadata: opts?.call?.metadata ?? NO_METADATA,
      signal: st.signal,
      raw: false,
      idleTimeoutMs: opts?.call?.idleTimeoutMs,
      minVersion: opts?.call?.minVersion,
    };
  };

  /**
   * A call relayed from the service's registry face: its bytes, call id, deadline, metadata and
   * cancellation pass on untouched; the reply bytes go back the same way.
   */
  /**
   * A relayed call is cancelled where it went: its host hears the caller's cancel (or its own
   * deadline) and passes it on with the same call id. A hook, not an AbortSignal per call: most
   * relayed calls are never cancelled.
   */
  const relayCancels = (job: HostedCall, callId: string, targets: readonly string[]) => {
    job.onAbort = () => {
      const id = new TextEncoder().encode(callId);
      for (const t of targets) transport.publish(subjects.cancel(t), id);
    };
  };

  const relayed = (job: HostedCall, payload: Uint8Array, minVersion: number | undefined): Outgoing => ({
    minVersion,
    method: job.method,
    args: undefined,
    payload,
    callId: job.callId,
    deadline: job.deadline,
    meta: job.metaHeader || undefined,
    metadata: job.metadata,
    signal: undefined,
    relayedFrom: job,
    // The caller's trace context goes on as it came when no span is made here.
    trace: job.traceparent ? job : undefined,
    raw: true,
    idleTimeoutMs: undefined,
  });

  // The common case (a healthy replica with room, no session, a built-in router) stays
  // synchronous up to the request: no extra promise hops in the path every call takes.
  const route = (out: Outgoing, opts?: RouteOptions): Promise<unknown> => {
    if (s.state !== "running") return Promise.reject(closedError(s));
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
    return dropWhenSettled(out, route(out, opts));
  };

  // Stored arguments go once the call has settled: by then every replica that took it has pulled them.
  const dropWhenSettled = <T,>(out: Outgoing, p: Promise<T>): Promise<T> => {
    const id = out.chunkId;
    return id === undefined ? p : p.finally(() => chunks.drop(id));
  };

  // Queue-group routing: NATS picks a replica. No per-replica accounting, so a crash cannot
  // fail its calls early: they run into their deadlines (the benchmark's comparison).
  const sendQueueGroup = async (out: Outgoing): Promise<unknown> => {
    if (s.state !== "running") throw closedError(s);
    const t0 = performance.now();
    if (out.relayedFrom) relayCancels(out.relayedFrom, out.callId, [subjects.replicaQueue(name)]);
    try {
      const span = clientSpan(tracer, traced, out.method, out.callId, 0);
      const bytes = await endSpan(span, requestCall(transport, subjects, subjects.replicaQueue(name), out.payload, span ? { ...out, trace: span } : out), codec);
      return succeeded(out, t0, out.raw ? bytes : unwrapReply<unknown>(codec, isChunkRef(bytes) ? await pullResult(bytes, out) : bytes));
    } catch (err) {
      recordMethod(out.method, t0, err);
      throw err;
    }
  };
  const viaQueueGroup = (opts: RouteOptions | undefined) => o.routing === "queue-group" && !opts?.session && !opts?.ranks;
  // NATS picks the replica of a queue-group call: nobody could honour its minVersion.
  const checkRoutesByVersion = () => {
    if (o.routing === "queue-group") {
      throw new InvalidOptionsError(`minVersion needs the controller to route: service "${name}" uses routing "queue-group", where NATS picks the replica; use the default routing`, {
        details: { service: name, option: "minVersion" },
      });
    }
  };

  const fanout = async (method: string, args: unknown[], opts?: RouteOptions): Promise<unknown[]> => {
    if (s.state !== "running") throw closedError(s);
    const t0 = performance.now();
    const out = outgoing(method, args, opts);
    try {
      await awaitReplica(out, () => replicas.find((r) => r.state === "healthy" && !r.updating && versions.admits(r, out.minVersion)));
      // Every replica, so none mid-update: a fanout waits for a rolling update's replicas to return.
      while (replicas.some((r) => r.updating)) await waitForChange(out.deadline, "a rolling update", out.signal);
      const healthy = replicas.filter((r) => r.state === "healthy" && versions.admits(r, out.minVersion));
      const results = await Promise.all(healthy.map((r) => sendTo(r, out, false)));
      recordMethod(method, t0);
      return results;
    } catch (err) {
      recordMethod(method, t0, err);
      throw err;
    } finally {
      chunks.drop(out.chunkId);
    }
  };

  return {
    call: (m, a, opts) => {
      if (opts?.call?.minVersion !== undefined) {
        try {
          checkRoutesByVersion();
        } catch (err) {
          return Promise.reject(err);
        }
      }
      if (!viaQueueGroup(opts)) return call(m, a, opts);
      try {
        const out = outgoing(m, a, opts);
        return dropWhenSettled(out, sendQueueGroup(out));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    fanout,
    relay: (job, payload) => {
      let out: Outgoing;
      try {
        const rolling = parseRolling(job.rollingHeader);
        if (rolling) return p.rollRelayed(job, payload, rolling);
        out = relayed(job, payload, parseMinVersion(job.minVersionHeader));
        if (out.minVersion !== undefined) checkRoutesByVersion();
      } catch (err) {
        return Promise.reject(err);
      }
      return (viaQueueGroup(undefined) ? sendQueueGroup(out) : route(out)) as Promise<Uint8Array>;
    },
    prepare(method, args, call, ro) {
      // Ab-Rolling tells the replica to run the call alone (src/actor/run-queue.ts).
      const out = { ...outgoing(method, args, { call }), rolling: ro };
      return { method, deadline: out.deadline, signal: out.signal, send: (r) => sendTo(r, out, false) };
    },
    prepareRelayed(job, payload) {
      // The roll is cancelled as a whole: the caller's cancel (or the host's deadline) aborts
      // it and the replica calls it has out, through one signal rather than per-call hooks.
      const ac = new AbortController();
      job.onAbort = (reason) => ac.abort(reason);
      const deadline = answerBy(job.deadline);
      const out: Outgoing = { ...relayed(job, payload, undefined), relayedFrom: undefined, signal: ac.signal, deadline, rolling: parseRolling(job.rollingHeader) };
      // A replica's error reply fails its update (decoded only then); results stay bytes.
      const checked = (bytes: unknown) => {
        if ((bytes as Uint8Array)[1] === 1) unwrapReply(codec, bytes as Uint8Array);
        return bytes;
      };
      return { method: job.method, deadline, signal: ac.signal, send: (r) => sendTo(r, out, false).then(checked) };
    },
    openSession: (rebind) => ({ id: nuid.next(), rebind, replica: undefined, generation: -1, closed: false }),
    closeSession(ss) {
      if (ss.closed) return;
      ss.closed = true;
      if (ss.replica && ss.replica.generation === ss.generation) ss.replica.sessions--;
      ss.replica = undefined;
    },
    async drain() {
      const inflight = () => replicas.reduce((n, r) => n + r.inflight.size, 0);
      const end = Date.now() + o.drainTimeoutMs;
      while (inflight() > 0 && Date.now() < end) await sleep(5);
      const late = new ServiceUnavailableError(`service "${name}" shut down before the call finished`, { details: { service: name } });
      for (const r of replicas) for (const f of [...r.inflight]) f.fail(late);
    },
  };
}

/**
 * One call in flight to one replica. A class rather than closures: the call path allocates one
 * object per call instead of half a dozen functions (and their names, under tsx).
 */
class RoutedCall implements Inflight {
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
    private readonly outcomes: CallOutcomes,
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
    if (--r.outstanding === 0) r.onIdle?.();
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
    if (!this.done) this.outcomes.answered(this.r, this.gen, this.t0);
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
    if (!this.done) this.outcomes.answered(this.r, this.gen, this.t0);
    const vs: unknown[] = [];
    try {
      for (const b of all) vs.push(unwrapReply<unknown>(this.codec, b));
    } catch (e) {
      return this.settle(e);
    }
    this.settle(undefined, this.allRanks ? vs : vs[0]);
  }

  /** The replica answered, but its result in chunks could not be pulled: the caller's error, not the replica's health. */
  pullFailed(err: unknown): void {
    this.settle(err);
  }

  error(err: unknown): void {
    // No reply by the deadline (not a CallTimeoutError the replica sent: that one is a reply).
    if (err instanceof CallTimeoutError && !this.done) this.outcomes.timedOut(this.r, this.gen, this.t0);
    this.settle(err instanceof ServiceUnavailableError ? this.onUnavailable(this.r, this.gen, err) : err);
  }
}
