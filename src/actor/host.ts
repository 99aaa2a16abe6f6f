import { hostname } from "node:os";
import PQueue from "p-queue";
import { brief, rateLimitedLogger, stderrLogger, type BusConnection, type Inbound, type Logger, type Subscription } from "../connection/index.ts";
import {
  CallTimeoutError,
  CodecError,
  MethodNotFoundError,
  OverloadedError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import { QUEUE_ACTORS, type Subjects } from "../subjects/index.ts";
import { callableMethods, OWNER_LIFECYCLE_METHODS } from "./methods.ts";
import type { ResolvedActorOptions } from "./options.ts";
import { describeOp, encodeErr, encodeOk, respondSafely, type CallRequest, type ControlOp, type InstanceInfo } from "./protocol.ts";
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

interface Job {
  msg: Inbound;
  deadline: number;
  settled: boolean;
}

export function createActorHost(p: ActorHostParams): ActorHost {
  const { conn, subjects, name, instance, options } = p;
  const { codec, transport } = conn;
  const owned = p.owned ?? true;
  const methods = owned ? callableMethods(instance) : callableMethods(instance, OWNER_LIFECYCLE_METHODS);
  const queue = new PQueue({ concurrency: options.maxConcurrency });
  const stats = createStatsRecorder();
  const subs: Subscription[] = [];
  let controlSub: Subscription | undefined;
  const live = new Set<Job>();
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

  const reply = (job: Job, bytes: Uint8Array) => {
    if (job.settled) return;
    job.settled = true;
    live.delete(job);
    send(job.msg, bytes, "call");
  };

  const run = async (job: Job, method: string, args: unknown[]) => {
    if (job.settled) return;
    if (failing) return reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
    // The caller gave up already: running the method would be wasted work. The answer still
    // goes out (one small message) so that every request gets exactly one reply.
    if (Date.now() > job.deadline) {
      stats.expired();
      return reply(job, encodeErr(codec, new CallTimeoutError(`the call to ${name}.${method} waited past its deadline in the queue and did not run`, {
        details: { service: name, method },
      })));
    }
    const t0 = performance.now();
    let out: Uint8Array;
    try {
      const value = await target[method]!(...args);
      out = encodeOk(codec, value);
      stats.record(performance.now() - t0, false);
    } catch (err) {
      // Either the method threw (a RemoteError for the caller) or its result cannot be encoded
      // (a CodecError from encodeOk); neither is a failure of the host.
      out = encodeErr(codec, err);
      stats.record(performance.now() - t0, true, `${brief((err as Error)?.name ?? "Error", 100)}: ${brief(err)}`);
    }
    reply(job, out);
  };

  /** Why a decoded call cannot be run, or undefined if it is well formed. */
  const malformed = (req: unknown): string | undefined => {
    if (!Array.isArray(req) || req.length !== 3) return "expected [method, args, timeoutMs]";
    if (typeof req[0] !== "string") return "method must be a string";
    if (!Array.isArray(req[1])) return "args must be an array";
    // Spreading more would throw RangeError inside the dispatch, reported as if the method threw.
    if (req[1].length > MAX_ARGS) return `at most ${MAX_ARGS} arguments per call (got ${req[1].length}); pass an array instead`;
    const t = req[2];
    if (typeof t !== "number" || !Number.isFinite(t) || t <= 0) return "timeoutMs must be a finite number of milliseconds > 0";
    return undefined;
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

  const onCall = (msg: Inbound) => {
    if (!msg.reply) {
      // Handles always ask for a reply: this is someone else's publish, and cannot be answered.
      log.warn("call without reply subject dropped", { ...where("call"), bytes: msg.data.length });
      return;
    }
    const job: Job = { msg, deadline: 0, settled: false };
    let req: CallRequest;
    try {
      const decoded = codec.decode<unknown>(msg.data);
      const why = malformed(decoded);
      if (why) throw new CodecError(`malformed call to ${name}: ${why}; call through a handle`, { details: { service: name } });
      req = decoded as CallRequest;
    } catch (err) {
      stats.rejected();
      log.warn("malformed call", { ...where("call"), bytes: msg.data.length, reason: brief(err) });
      return reply(job, encodeErr(codec, err instanceof CodecError ? err : new CodecError(brief(err))));
    }
    const [method, args, timeoutMs] = req;
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
    if (queue.size >= options.maxPending && queue.pending >= options.maxConcurrency) {
      stats.rejected();
      return reply(job, encodeErr(codec, new OverloadedError(
        `${name} is overloaded: ${queue.pending} running and ${queue.size} queued (maxPending ${options.maxPending}); retry with backoff or add replicas`,
        { details: { service: name, running: queue.pending, queued: queue.size } },
      )));
    }
    job.deadline = Date.now() + timeoutMs;
    live.add(job);
    queue.add(() => run(job, method, args)).catch(() => {});
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
        send(msg, encodeOk(codec, { ...info, options, stats: stats.snapshot(queue.pending, queue.size) }), "control");
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
    stats: () => stats.snapshot(queue.pending, queue.size),
    async listenControl() {
      controlSub ??= transport.subscribe(subjects.instance(p.instanceId), onControl, controlGuard);
      await transport.flush();
    },
    async listenCalls() {
      accepting = true;
      if (p.callSubjects) {
        for (const c of p.callSubjects) subs.push(transport.subscribe(c.subject, onCall, { ...callGuard, queue: c.queue }));
      } else {
        subs.push(transport.subscribe(subjects.call(name), onCall, { ...callGuard, queue: QUEUE_ACTORS }));
        subs.push(transport.subscribe(subjects.control(name), onControl, { ...controlGuard, queue: QUEUE_ACTORS }));
      }
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
        for (const job of [...live]) reply(job, err);
        await transport.flush().catch(() => {});
        if (owned) await dispose(instance);
        controlSub?.unsubscribe();
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
