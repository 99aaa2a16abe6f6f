import { hostname } from "node:os";
import PQueue from "p-queue";
import type { BusConnection, Inbound, Subscription } from "../connection/index.ts";
import {
  CodecError,
  MethodNotFoundError,
  OverloadedError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import { QUEUE_ACTORS, type Subjects } from "../subjects/index.ts";
import { callableMethods } from "./methods.ts";
import type { ResolvedActorOptions } from "./options.ts";
import { encodeErr, encodeOk, type CallRequest, type ControlOp, type InstanceInfo } from "./protocol.ts";
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
   * with ServiceUnavailableError, then disposes the instance. Idempotent.
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
}

interface Job {
  msg: Inbound;
  deadline: number;
  settled: boolean;
}

export function createActorHost(p: ActorHostParams): ActorHost {
  const { conn, subjects, name, instance, options } = p;
  const { codec, transport } = conn;
  const methods = callableMethods(instance);
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

  const reply = (job: Job, bytes: Uint8Array) => {
    if (job.settled) return;
    job.settled = true;
    live.delete(job);
    job.msg.respond(bytes);
  };

  const run = async (job: Job, method: string, args: unknown[]) => {
    if (job.settled) return;
    if (failing) return reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
    // The caller gave up already: running the method would be wasted work.
    if (Date.now() > job.deadline) {
      stats.expired();
      job.settled = true;
      live.delete(job);
      return;
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
      stats.record(performance.now() - t0, true, `${(err as Error)?.name ?? "Error"}: ${(err as Error)?.message ?? String(err)}`);
    }
    reply(job, out);
  };

  const onCall = (msg: Inbound) => {
    if (!msg.reply) return; // a publish without reply subject cannot be answered: ignore it
    const job: Job = { msg, deadline: 0, settled: false };
    let req: CallRequest;
    try {
      req = codec.decode<CallRequest>(msg.data);
      if (!Array.isArray(req) || typeof req[0] !== "string" || !Array.isArray(req[1])) throw new CodecError("malformed call: expected [method, args, timeoutMs]");
    } catch (err) {
      stats.rejected();
      return reply(job, encodeErr(codec, err instanceof CodecError ? err : new CodecError(String(err))));
    }
    const [method, args, timeoutMs] = req;
    if (!accepting) return reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
    if (!methods.has(method)) {
      stats.rejected();
      return reply(job, encodeErr(codec, new MethodNotFoundError(
        `${name} has no method "${method}"; it has ${[...methods].sort().join(", ") || "no public methods"}`,
        { details: { service: name, method, methods: [...methods].sort() } },
      )));
    }
    if (queue.size >= options.maxPending && queue.pending >= options.maxConcurrency) {
      stats.rejected();
      return reply(job, encodeErr(codec, new OverloadedError(
        `${name} is overloaded: ${queue.pending} running and ${queue.size} queued (maxPending ${options.maxPending}); retry with backoff or add replicas`,
        { details: { service: name, running: queue.pending, queued: queue.size } },
      )));
    }
    job.deadline = Date.now() + (typeof timeoutMs === "number" && timeoutMs > 0 ? timeoutMs : options.timeoutMs);
    live.add(job);
    queue.add(() => run(job, method, args)).catch(() => {});
  };

  const onControl = (msg: Inbound) => {
    if (!msg.reply) return;
    let op: ControlOp;
    try {
      op = codec.decode<ControlOp>(msg.data);
    } catch (err) {
      msg.respond(encodeErr(codec, err));
      return;
    }
    switch (op?.op) {
      case "ping":
        msg.respond(encodeOk(codec, info));
        return;
      case "stats":
        msg.respond(encodeOk(codec, { ...info, options, stats: stats.snapshot(queue.pending, queue.size) }));
        return;
      case "stop":
        host.stop(op.graceMs ?? 0).then(
          () => {
            msg.respond(encodeOk(codec, true));
            p.onRemoteStop?.();
          },
          (err) => msg.respond(encodeErr(codec, err)),
        );
        return;
      default:
        msg.respond(encodeErr(codec, new CodecError(`unknown control op ${JSON.stringify((op as { op?: unknown })?.op)}`)));
    }
  };

  const host: ActorHost = {
    info,
    instance,
    stats: () => stats.snapshot(queue.pending, queue.size),
    async listenControl() {
      controlSub ??= transport.subscribe(subjects.instance(p.instanceId), onControl);
      await transport.flush();
    },
    async listenCalls() {
      accepting = true;
      if (p.callSubjects) {
        for (const c of p.callSubjects) subs.push(transport.subscribe(c.subject, onCall, c.queue ? { queue: c.queue } : undefined));
      } else {
        subs.push(transport.subscribe(subjects.call(name), onCall, { queue: QUEUE_ACTORS }));
        subs.push(transport.subscribe(subjects.control(name), onControl, { queue: QUEUE_ACTORS }));
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
        await dispose(instance);
        controlSub?.unsubscribe();
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
