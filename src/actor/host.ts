import { hostname } from "node:os";
import PQueue from "p-queue";
import { brief, rateLimitedLogger, stderrLogger, type BusConnection, type Inbound, type Logger, type Subscription } from "../connection/index.ts";
import { CALL_HEADER, META_HEADER, parseCallHeader, parseMetadata, runInCall } from "../call/index.ts";
import { createDeadlines, headerOf } from "../connection/index.ts";
import {
  CallTimeoutError,
  CancelledError,
  CodecError,
  MethodNotFoundError,
  OverloadedError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import { DEFAULT_WINDOW, isAsyncIterable, serveStream, type HostStream } from "../stream/index.ts";
import { HostedCall } from "./hosted-call.ts";
import { QUEUE_ACTORS, type Subjects } from "../subjects/index.ts";
import { callableMethods, OWNER_LIFECYCLE_METHODS } from "./methods.ts";
import type { ResolvedActorOptions } from "./options.ts";
import { describeOp, encodeErr, encodeOk, respondSafely, type ControlOp, type InstanceInfo } from "./protocol.ts";
import { createStatsRecorder, type ActorStats } from "./stats.ts";

/**
 * One instance of a service served over the bus: a queue-group subscriber on the service's call
 * subject, with a p-queue capping concurrency and a bounded backlog. Several hosts of one service
 * (in any process) share its calls through the queue group.
 */
export interface ActorHost {
  readonly info: InstanceInfo;
  readonly instance: object;
  stats(): ActorStats;
  /** Subscribes to the instance's own control subject (before it is registered anywhere). */
  listenControl(): Promise<void>;
  /** Subscribes to calls and the shared liveness ping: the instance starts serving. */
  listenCalls(): Promise<void>;
  /**
   * Stops taking calls, lets running and queued calls finish for up to `graceMs`, fails the rest
   * with ServiceUnavailableError, then disposes the instance if it owns it. Idempotent.
   */
  stop(graceMs?: number): Promise<void>;
  readonly stopped: boolean;
}

export interface ActorHostParams {
  conn: BusConnection;
  subjects: Subjects;
  name: string;
  instance: object;
  instanceId: string;
  hostId: string;
  options: ResolvedActorOptions;
  /** Called once the host stopped because of a remote stop request (reset) rather than close(). */
  onRemoteStop?: () => void;
  /**
   * Where calls come from. Default: the service's call subject and liveness ping, in queue group
   * "actors". Replicas of a routed service listen on their own subjects instead (issue 3).
   */
  callSubjects?: { subject: string; queue?: string }[];
  /** Where malformed inbound messages are reported, rate-limited per host (default: stderr). */
  logger?: Logger;
  /**
   * false: the instance belongs to someone else (registerInstance). stop() then only stops
   * serving it, and its lifecycle methods are not callable. Default true.
   */
  owned?: boolean;
}

const MAX_ARGS = 65_535;
const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({});
const utf8 = new TextDecoder();

/**
 * An instance that relays calls instead of running them (a replicated service's registry face):
 * it gets the encoded arguments and returns the encoded reply, so neither is decoded on the way.
 */
export const RELAY = Symbol.for("actorbus.relay");
export type Relay = (call: HostedCall, payload: Uint8Array) => Promise<Uint8Array>;

export function createActorHost(p: ActorHostParams): ActorHost {
  const { conn, subjects, name, instance, options } = p;
  const { codec, transport } = conn;
  const owned = p.owned ?? true;
  const methods = owned ? callableMethods(instance) : callableMethods(instance, OWNER_LIFECYCLE_METHODS);
  const queue = new PQueue({ concurrency: options.maxConcurrency });
  const stats = createStatsRecorder();
  const subs: Subscription[] = [];
  // Cancels and stream pulls for calls already taken: heard until the very end of stop(), so
  // calls draining during a stop can still be cancelled and streams still be read or closed.
  const drainSubs: Subscription[] = [];
  let controlSub: Subscription | undefined;
  const live = new Map<string, HostedCall>(); // by call id
  // Queued calls cancelled before they ran still sit in p-queue until it reaches them; they do
  // not count against maxPending.
  let cancelledQueued = 0;
  const relay = (instance as Record<symbol, unknown>)[RELAY] as Relay | undefined;
  // A method that asked for its signal is aborted at its deadline; one shared timer for all.
  const running = createDeadlines<HostedCall>((c) => {
    if (!c.settled) c.abort(new CallTimeoutError(`the call to ${name}.${c.method} passed its deadline`, { details: { service: name, method: c.method } }));
  });
  const watchDeadline = (c: HostedCall) => {
    const left = c.deadline - Date.now();
    if (left <= 0) c.abort(new CallTimeoutError(`the call to ${name}.${c.method} passed its deadline`, { details: { service: name, method: c.method } }));
    else running.add(c, left);
  };
  let accepting = false;
  let failing = false;
  let stopping: Promise<void> | undefined;
  const info: InstanceInfo = {
    instanceId: p.instanceId,
    service: name,
    hostname: hostname(),
    pid: process.pid,
    hostId: p.hostId,
    startedAt: new Date().toISOString(),
  };
  const target = instance as Record<string, (...a: unknown[]) => unknown>;
  const log = rateLimitedLogger(p.logger ?? stderrLogger());
  const where = (subject: string) => ({ service: name, instanceId: p.instanceId, subject });

  const send = (msg: Inbound, bytes: Uint8Array, subject: string) => {
    const problem = respondSafely(msg, bytes, codec, transport.maxPayload);
    if (problem) log.warn("reply not sent as is", { ...where(subject), reason: problem });
  };

  const reply = (job: HostedCall, bytes: Uint8Array) => {
    if (job.settled) return;
    settle(job);
    send(job.msg, bytes, "call");
  };

  const settle = (job: HostedCall) => {
    job.settled = true;
    if (live.get(job.callId) === job) live.delete(job.callId);
    if (job.signalled) running.delete(job, Math.max(1, job.deadline - Date.now()));
  };

  const streams = new Map<string, HostStream>();
  let nextStream = 0;
  const onStreamControl = (msg: Inbound) => {
    const id = subjects.streamIdOf(msg.subject);
    if (id !== undefined) streams.get(id)?.onControl(msg.data);
  };

  /**
   * The method returned an async iterable: answer with where to pull from, then serve items
   * within the caller's credit. The call holds its concurrency slot until the stream ends.
   */
  const serveStreamed = async (job: HostedCall, iterable: AsyncIterable<unknown>) => {
    const id = (nextStream++).toString(36);
    const stream = serveStream({
      transport,
      codec,
      iterable,
      subject: subjects.stream(p.instanceId, id),
      signal: job.signal,
      maxPayload: transport.maxPayload,
      // The generator's body runs inside next(): give it the call's context there.
      enter: (fn) => runInCall(job, fn),
    });
    streams.set(id, stream);
    send(job.msg, codec.encode([2, subjects.stream(p.instanceId, id), DEFAULT_WINDOW, Math.max(1, job.deadline - Date.now())]), "call");
    try {
      await stream.done;
    } finally {
      streams.delete(id);
      settle(job);
    }
  };

  const invoke = (job: HostedCall): Promise<unknown> =>
    relay ? relay(job, job.msg.data) : Promise.resolve(target[job.method]!(...job.args!));

  const run = async (job: HostedCall) => {
    if (job.settled) return;
    if (job.cancelled) {
      // The caller has its CancelledError already; nobody waits for a reply.
      cancelledQueued--;
      return settle(job);
    }
    if (failing) return reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
    // The caller gave up already: running the method would be wasted work. The answer still
    // goes out (one small message) so that every request gets exactly one reply.
    if (Date.now() > job.deadline) {
      stats.expired();
      return reply(job, encodeErr(codec, new CallTimeoutError(`the call to ${name}.${job.method} waited past its deadline in the queue and did not run`, {
        details: { service: name, method: job.method },
      })));
    }
    job.started = true;
    const t0 = performance.now();
    let out: Uint8Array;
    let failed = false;
    try {
      const value = await runInCall(job, () => invoke(job));
      if (!relay && isAsyncIterable(value)) {
        await serveStreamed(job, value);
        stats.record(performance.now() - t0, false);
        return;
      }
      out = relay ? (value as Uint8Array) : encodeOk(codec, value);
      // A relayed reply is bytes: its first element says whether it carries an error.
      failed = relay !== undefined && out[1] === 1;
    } catch (err) {
      // Either the method threw (a RemoteError for the caller) or its result cannot be encoded
      // (a CodecError from encodeOk); neither is a failure of the host.
      out = encodeErr(codec, err);
      failed = true;
      stats.record(performance.now() - t0, true, `${brief((err as Error)?.name ?? "Error", 100)}: ${brief(err)}`);
      return reply(job, out);
    }
    stats.record(performance.now() - t0, failed);
    reply(job, out);
  };

  /** The call a message carries, or throws a CodecError saying what is wrong with it. */
  const parseCall = (msg: Inbound): HostedCall => {
    const header = headerOf(msg, CALL_HEADER);
    if (!header) throw new CodecError(`call to ${name} without its ${CALL_HEADER} header; call through a handle`, { details: { service: name } });
    const h = parseCallHeader(header);
    if (typeof h === "string") throw new CodecError(`malformed call to ${name}: ${h}`, { details: { service: name } });
    const metaHeader = headerOf(msg, META_HEADER);
    const metadata = metaHeader ? parseMetadata(metaHeader) : NO_METADATA;
    let args: unknown[] | undefined;
    if (!relay) {
      const decoded = codec.decode<unknown>(msg.data);
      if (!Array.isArray(decoded)) throw new CodecError(`malformed call to ${name}: the payload must be the encoded argument array`, { details: { service: name } });
      // Spreading more would throw RangeError inside the dispatch, reported as if the method threw.
      if (decoded.length > MAX_ARGS) throw new CodecError(`malformed call to ${name}: at most ${MAX_ARGS} arguments per call (got ${decoded.length}); pass an array instead`, { details: { service: name } });
      args = decoded;
    }
    return new HostedCall(msg, h.callId, h.method, Date.now() + h.remainingMs, metadata, metaHeader, args);
  };

  const onCancel = (msg: Inbound) => {
    const job = live.get(utf8.decode(msg.data));
    if (!job || job.settled) return;
    const err = new CancelledError(`the call to ${name}.${job.method} was cancelled by its caller`, { details: { service: name, method: job.method } });
    if (!job.started) {
      // Still queued: it never runs, and its place in maxPending is free now.
      job.cancelled = true;
      cancelledQueued++;
      live.delete(job.callId);
      stats.cancelled();
      return;
    }
    job.abort(err);
  };

  // A handler that throws is a bug of ours, not of the caller: the caller still hears.
  const answerThrow = (subject: "call" | "control") => ({
    onError: (msg: Inbound, err: unknown) => {
      log.warn(`${subject} handler failed`, { ...where(subject), reason: brief(err) });
      send(msg, encodeErr(codec, err), subject);
    },
  });
  const callGuard = answerThrow("call");
  const controlGuard = answerThrow("control");
  const cancelGuard = { onError: (_msg: Inbound, err: unknown) => log.warn("cancel handler failed", { ...where("cancel"), reason: brief(err) }) };

  const onCall = (msg: Inbound) => {
    if (!msg.reply) {
      // Handles always ask for a reply: this is someone else's publish, and cannot be answered.
      log.warn("call without reply subject dropped", { ...where("call"), bytes: msg.data.length });
      return;
    }
    let job: HostedCall;
    try {
      job = parseCall(msg);
    } catch (err) {
      stats.rejected();
      log.warn("malformed call", { ...where("call"), bytes: msg.data.length, reason: brief(err) });
      return send(msg, encodeErr(codec, err instanceof CodecError ? err : new CodecError(brief(err))), "call");
    }
    const method = job.method;
    if (!accepting) return reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
    if (!methods.has(method)) {
      stats.rejected();
      const known = [...methods].sort();
      if (!owned && OWNER_LIFECYCLE_METHODS.has(method)) {
        return reply(job, encodeErr(codec, new MethodNotFoundError(
          `${name}.${method}() is a lifecycle method of an object registered with registerInstance(): only its owner calls it, in its own process; callable: ${known.join(", ") || "no public methods"}`,
          { details: { service: name, method, methods: known, lifecycle: true } },
        )));
      }
      return reply(job, encodeErr(codec, new MethodNotFoundError(
        `${name} has no method "${brief(method, 100)}"; it has ${known.join(", ") || "no public methods"}`,
        { details: { service: name, method: brief(method, 100), methods: known } },
      )));
    }
    const queued = queue.size - cancelledQueued;
    if (queued >= options.maxPending && queue.pending >= options.maxConcurrency) {
      stats.rejected();
      return reply(job, encodeErr(codec, new OverloadedError(
        `${name} is overloaded: ${queue.pending} running and ${queued} queued (maxPending ${options.maxPending}); retry with backoff or add replicas`,
        { details: { service: name, running: queue.pending, queued } },
      )));
    }
    job.onSignal = watchDeadline;
    live.set(job.callId, job);
    queue.add(() => run(job)).catch(() => {});
  };

  const badControl = (msg: Inbound, why: string) => {
    log.warn("malformed control request", { ...where("control"), bytes: msg.data.length, reason: why });
    send(msg, encodeErr(codec, new CodecError(`malformed control request to ${name}: ${why}`, { details: { service: name } })), "control");
  };

  const onControl = (msg: Inbound) => {
    if (!msg.reply) {
      log.warn("control request without reply subject dropped", { ...where("control"), bytes: msg.data.length });
      return;
    }
    let op: ControlOp;
    try {
      op = codec.decode<ControlOp>(msg.data);
    } catch (err) {
      return badControl(msg, brief(err));
    }
    if (op === null || typeof op !== "object" || Array.isArray(op)) return badControl(msg, 'expected { op: "ping" | "stats" | "stop" }');
    switch (op.op) {
      case "ping":
        send(msg, encodeOk(codec, info), "control");
        return;
      case "stats":
        send(msg, encodeOk(codec, { ...info, options, stats: stats.snapshot(queue.pending, queue.size - cancelledQueued) }), "control");
        return;
      case "stop": {
        const graceMs = op.graceMs ?? 0;
        if (typeof graceMs !== "number" || !Number.isFinite(graceMs) || graceMs < 0) return badControl(msg, "graceMs must be a finite number of milliseconds >= 0");
        host.stop(graceMs).then(
          () => {
            send(msg, encodeOk(codec, true), "control");
            p.onRemoteStop?.();
          },
          (err) => send(msg, encodeErr(codec, err), "control"),
        );
        return;
      }
      default:
        return badControl(msg, `unknown op ${describeOp((op as { op?: unknown }).op)}`);
    }
  };

  const host: ActorHost = {
    info,
    instance,
    stats: () => stats.snapshot(queue.pending, queue.size - cancelledQueued),
    async listenControl() {
      controlSub ??= transport.subscribe(subjects.instance(p.instanceId), onControl, controlGuard);
      await transport.flush();
    },
    async listenCalls() {
      accepting = true;
      const callSubjects = p.callSubjects ?? [{ subject: subjects.call(name), queue: QUEUE_ACTORS }];
      for (const c of callSubjects) {
        subs.push(transport.subscribe(c.subject, onCall, { ...callGuard, queue: c.queue }));
        // Every host of the subject hears a cancel: only the one holding the call acts on it.
        drainSubs.push(transport.subscribe(subjects.cancel(c.subject), onCancel, cancelGuard));
      }
      drainSubs.push(transport.subscribe(subjects.streams(p.instanceId), onStreamControl, cancelGuard));
      if (!p.callSubjects) subs.push(transport.subscribe(subjects.control(name), onControl, { ...controlGuard, queue: QUEUE_ACTORS }));
      await transport.flush();
    },
    get stopped() {
      return stopping !== undefined;
    },
    stop(graceMs = options.drainTimeoutMs) {
      stopping ??= (async () => {
        accepting = false;
        // Unsubscribing the calls first lets the queue group route new calls to other hosts.
        // Keep the instance subject until the end so the stop request itself can be answered.
        for (const s of subs.splice(0)) s.unsubscribe();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([queue.onIdle(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
        failing = true;
        queue.clear();
        const err = encodeErr(codec, new ServiceUnavailableError(`${name} stopped before the call finished`));
        const stopped = new ServiceUnavailableError(`${name} stopped before the call finished`);
        for (const job of [...live.values()]) {
          job.abort(stopped); // ends its stream, if it streams
          reply(job, err);
        }
        running.close();
        await transport.flush().catch(() => {});
        if (owned) await dispose(instance);
        controlSub?.unsubscribe();
        for (const s of drainSubs.splice(0)) s.unsubscribe();
        log.flush();
      })();
      return stopping;
    },
  };
  return host;
}

/** Releases what the instance holds (processes, pools): asyncDispose, dispose, or close(). */
async function dispose(instance: object): Promise<void> {
  const o = instance as Record<PropertyKey, unknown>;
  try {
    if (typeof o[Symbol.asyncDispose] === "function") await (o[Symbol.asyncDispose] as () => Promise<void>)();
    else if (typeof o[Symbol.dispose] === "function") (o[Symbol.dispose] as () => void)();
    else if (typeof o.close === "function") await (o.close as () => unknown)();
  } catch {
    // A failing dispose must not keep the rest of the namespace from stopping.
  }
}
