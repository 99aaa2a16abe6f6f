import { hostname } from "node:os";
import { brief, headersOf, MAX_BATCH_CALLS, rateLimitedLogger, stderrLogger, unbatch, type BusConnection, type Inbound, type Logger, type Subscription } from "../connection/index.ts";
import { CodecError, ServiceUnavailableError } from "../errors/index.ts";
import { NO_METRICS, type MetricsSink } from "../metrics/index.ts";
import { encodeErr, respondSafely } from "../reply/index.ts";
import { QUEUE_ACTORS, type Subjects } from "../subjects/index.ts";
import { CALL_HEADERS, parseCall, RELAY_CALL_HEADERS, refuseMethod, type CallHeaders } from "./call-request.ts";
import { createHostControl } from "./control.ts";
import type { HostedCall } from "./hosted-call.ts";
import { createMailbox } from "./mailbox.ts";
import { callableMethods, OWNER_LIFECYCLE_METHODS } from "./methods.ts";
import type { ResolvedActorOptions } from "./options.ts";
import type { InstanceInfo } from "./protocol.ts";
import { relayOf } from "./relay.ts";
import { createStatsRecorder, type ActorStats } from "./stats.ts";

/**
 * One instance of a service served over the bus: a queue-group subscriber on the service's call
 * subject, with a run queue capping concurrency and a bounded backlog. Several hosts of one service
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
  /**
   * A replica of a replicated service: a call marked as part of a rolling update (Ab-Rolling)
   * runs alone, after the calls before it and before those after, so none sees it half-done.
   */
  rollable?: boolean;
  /** Where the host's calls, in-flight and queue figures go (default: nowhere, at no cost). */
  metrics?: MetricsSink;
}

/** Wires a host: its subscriptions, the checks a call passes, its mailbox and its control side. */
export function createActorHost(p: ActorHostParams): ActorHost {
  const { conn, subjects, name, instance, options } = p;
  const { codec, transport } = conn;
  const owned = p.owned ?? true;
  const methods = owned ? callableMethods(instance) : callableMethods(instance, OWNER_LIFECYCLE_METHODS);
  const stats = createStatsRecorder();
  const subs: Subscription[] = [];
  // Cancels and stream pulls for calls already taken: heard until the very end of stop(), so
  // calls draining during a stop can still be cancelled and streams still be read or closed.
  const drainSubs: Subscription[] = [];
  let controlSub: Subscription | undefined;
  const relay = relayOf(instance);
  const headerNames = relay || p.rollable ? RELAY_CALL_HEADERS : CALL_HEADERS;
  let accepting = false;
  let stopping: Promise<void> | undefined;
  const info: InstanceInfo = {
    instanceId: p.instanceId,
    service: name,
    hostname: hostname(),
    pid: process.pid,
    hostId: p.hostId,
    startedAt: new Date().toISOString(),
  };
  const log = rateLimitedLogger(p.logger ?? stderrLogger());
  const where = (subject: string) => ({ service: name, instanceId: p.instanceId, subject });

  const send = (msg: Inbound, bytes: Uint8Array, subject: string) => {
    const problem = respondSafely(msg, bytes, codec, transport.maxPayload);
    if (problem) log.warn("reply not sent as is", { ...where(subject), reason: problem });
  };

  // Replies to the calls of a batch go one by one or combined (the mailbox's outbox decides).
  const publishReply = (subject: string, data: Uint8Array) => {
    try {
      transport.publish(subject, data);
    } catch (err) {
      log.warn("reply not sent", { ...where("call"), reason: brief(err) });
    }
  };

  const metrics = p.metrics ?? NO_METRICS;
  const calls = metrics.host(subjects.namespace, name, methods);
  const mailbox = createMailbox({ conn, subjects, name, instanceId: p.instanceId, instance, options, stats, relay, send, publish: publishReply, calls });
  const labels = { namespace: subjects.namespace, service: name };
  // Read when Prometheus scrapes; the hosts of one service in this process add up.
  const unwatch = [
    metrics.read("actorbus_calls_in_flight", (push) => push(labels, mailbox.running)),
    metrics.read("actorbus_queue_depth", (push) => push(labels, mailbox.queued)),
  ];
  const snapshot = () => stats.snapshot(mailbox.running, mailbox.queued);
  const control = createHostControl({
    codec,
    name,
    info,
    options,
    mailbox,
    stats: snapshot,
    stop: (graceMs) => host.stop(graceMs),
    onRemoteStop: p.onRemoteStop,
    log,
    where,
    send,
  });

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

  const malformed = (msg: Inbound, err: unknown) => {
    stats.rejected();
    calls.method("").count("CODEC");
    log.warn("malformed call", { ...where("call"), bytes: msg.data.length, reason: brief(err) });
    send(msg, encodeErr(codec, err instanceof CodecError ? err : new CodecError(brief(err))), "call");
  };

  const accept = (msg: Inbound, headers: CallHeaders) => {
    let job: HostedCall;
    try {
      job = parseCall(msg, headers, name, codec, !relay);
    } catch (err) {
      return malformed(msg, err);
    }
    if (!accepting) {
      calls.method(job.method).count("SERVICE_UNAVAILABLE");
      return mailbox.reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
    }
    const refused = refuseMethod(name, job.method, methods, owned);
    if (refused) {
      stats.rejected();
      calls.method(job.method).count(refused.code);
      return mailbox.reply(job, encodeErr(codec, refused));
    }
    mailbox.post(job);
  };

  const onCall = (msg: Inbound) => {
    if (!msg.reply) {
      // Handles always ask for a reply: this is someone else's publish, and cannot be answered.
      log.warn("call without reply subject dropped", { ...where("call"), bytes: msg.data.length });
      return;
    }
    const headers = headersOf(msg, headerNames);
    if (!headers[2]) return accept(msg, headers);
    let batch: Inbound[];
    try {
      batch = unbatch(msg, headers[2], MAX_BATCH_CALLS, publishReply);
    } catch (err) {
      return malformed(msg, err);
    }
    mailbox.batch(() => {
      for (const call of batch) {
        const h = headersOf(call, headerNames);
        if (h[2]) malformed(call, new CodecError("a batch inside a batch"));
        else accept(call, h);
      }
    });
  };

  const host: ActorHost = {
    info,
    instance,
    stats: snapshot,
    async listenControl() {
      controlSub ??= transport.subscribe(subjects.instance(p.instanceId), control.onControl, controlGuard);
      await transport.flush();
    },
    async listenCalls() {
      accepting = true;
      const callSubjects = p.callSubjects ?? [{ subject: subjects.call(name), queue: QUEUE_ACTORS }];
      for (const c of callSubjects) {
        subs.push(transport.subscribe(c.subject, onCall, { ...callGuard, queue: c.queue }));
        // Every host of the subject hears a cancel: only the one holding the call acts on it.
        drainSubs.push(transport.subscribe(subjects.cancel(c.subject), control.onCancel, cancelGuard));
      }
      drainSubs.push(transport.subscribe(subjects.streams(p.instanceId), mailbox.onStreamControl, cancelGuard));
      if (!p.callSubjects) subs.push(transport.subscribe(subjects.control(name), control.onControl, { ...controlGuard, queue: QUEUE_ACTORS }));
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
        await mailbox.drain(graceMs);
        await transport.flush().catch(() => {});
        if (owned) await dispose(instance);
        controlSub?.unsubscribe();
        for (const s of drainSubs.splice(0)) s.unsubscribe();
        for (const u of unwatch.splice(0)) u();
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
