import { runInCall } from "../call/index.ts";
import { brief, createDeadlines, sendReplies, writeNowOf, type BusConnection, type Inbound } from "../connection/index.ts";
import { CallTimeoutError, CancelledError, errorClassFor, OverloadedError, ServiceUnavailableError, type WireError } from "../errors/index.ts";
import { codeOf, type CallRecorder, type MethodRecorder } from "../metrics/index.ts";
import { chunksOf } from "../chunks/index.ts";
import { encodeErr } from "../reply/index.ts";
import { DEFAULT_WINDOW, isAsyncIterable, serveStream, type HostStream } from "../stream/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { ATTR, serverSpans, tracerSource } from "../tracing/index.ts";
import { decodeArgList } from "./call-request.ts";
import type { HostedCall } from "./hosted-call.ts";
import type { ResolvedActorOptions } from "./options.ts";
import type { Relay } from "./relay.ts";
import { createRunQueue } from "./run-queue.ts";
import type { StatsRecorder } from "./stats.ts";

/**
 * The calls a host has accepted: at most maxConcurrency run, at most maxPending wait; each gets
 * exactly one reply. Queued calls cancelled by their callers never run; running ones see their
 * signal fire on a cancel or at their deadline. A method that returns an async iterable streams
 * and keeps its slot until the stream ends.
 */
export interface Mailbox {
  /** Calls running now. */
  readonly running: number;
  /** Calls waiting to run (cancelled ones not counted). */
  readonly queued: number;
  /** Queues an accepted call, or answers it with OverloadedError when the mailbox is full. */
  post(job: HostedCall): void;
  /** Answers a call (once; later answers are dropped). */
  reply(job: HostedCall, bytes: Uint8Array): void;
  /**
   * Runs `fn`, which posts (or answers) the calls of one batch message: replies ready before it
   * returns leave together, combined, rather than the first one alone.
   */
  batch(fn: () => void): void;
  /** The caller of `callId` cancelled it. */
  cancel(callId: string): void;
  /** A message from the consumer of one of the streams this mailbox serves. */
  onStreamControl(msg: Inbound): void;
  /** Lets calls finish for up to `graceMs`, then fails the rest with ServiceUnavailableError. */
  drain(graceMs: number): Promise<void>;
}

export interface MailboxParams {
  conn: BusConnection;
  subjects: Subjects;
  name: string;
  instanceId: string;
  instance: object;
  options: ResolvedActorOptions;
  stats: StatsRecorder;
  /** Prometheus series of the service's calls (the null recorder when metrics are off). */
  calls: CallRecorder;
  /** Set when the instance relays calls rather than running them. */
  relay: Relay | undefined;
  /** Sends a reply, never throwing (what could not be sent as is goes to the host's log). */
  send(msg: Inbound, bytes: Uint8Array, subject: string): void;
  /** Publishes combined replies, never throwing. */
  publish(subject: string, data: Uint8Array): void;
}

// How long the first reply of a long turn may wait for others to leave with it.
const OUTBOX_HOLD_MS = 1;

export function createMailbox(p: MailboxParams): Mailbox {
  const { conn, subjects, name, options, stats, relay, send, calls } = p;
  const { codec, transport } = conn;
  const chunks = chunksOf(conn);
  const live = new Map<string, HostedCall>(); // by call id
  // Queued calls cancelled before they ran still sit in the run queue until it reaches them; they do
  // not count against maxPending.
  let cancelledQueued = 0;
  let failing = false;
  const target = p.instance as Record<string, (...a: unknown[]) => unknown>;
  // OpenTelemetry SERVER spans, made only while an SDK is registered (job.trace stays undefined).
  const spans = serverSpans(tracerSource(), { namespace: subjects.namespace, service: name, subject: subjects.call(name) }, codec, { [ATTR.instance]: p.instanceId, [ATTR.relay]: relay !== undefined });
  // A method that asked for its signal is aborted at its deadline; one shared timer for all.
  const running = createDeadlines<HostedCall>((c) => {
    if (!c.settled) c.abort(new CallTimeoutError(`the call to ${name}.${c.method} passed its deadline`, { details: { service: name, method: c.method } }));
  });
  const watchDeadline = (c: HostedCall) => {
    const left = c.deadline - Date.now();
    if (left <= 0) c.abort(new CallTimeoutError(`the call to ${name}.${c.method} passed its deadline`, { details: { service: name, method: c.method } }));
    else running.add(c, (c.watchedMs = left));
  };

  // nats.js writes to the socket one microtask after the first message it is given. Replies of
  // calls that finish at different microtask depths (a mailbox runs them one after another)
  // would each cost a write syscall; while other calls are in flight, replies wait for the end
  // of this turn of the event loop and leave together. A lone call's reply leaves at once, and
  // is written to the socket in the same pass (writeNowOf). Replies to one caller's coalesced
  // calls leave combined in one message; those of a batch answered entirely as it was read
  // leave when its last call is posted.
  const outbox: [Inbound, Uint8Array][] = [];
  let outboxFlush: ReturnType<typeof setImmediate> | undefined;
  let outboxSince = 0;
  // Set while the calls of one batch message are posted: a call answered at once is not alone.
  let batching = 0;
  // A lone reply is written to the socket at once, not after what else this turn runs.
  const writeNow = writeNowOf(conn.nc);
  const sendOne = (msg: Inbound, bytes: Uint8Array) => send(msg, bytes, "call");
  const flushOutbox = () => {
    if (outboxFlush) clearImmediate(outboxFlush);
    outboxFlush = undefined;
    sendReplies(outbox.splice(0), transport.maxPayload, p.publish, sendOne);
  };

  const reply = (job: HostedCall, bytes: Uint8Array) => {
    if (job.settled) return;
    job.trace?.end(bytes);
    settle(job);
    if (live.size === 0 && outbox.length === 0 && batching === 0) {
      send(job.msg, bytes, "call");
      return writeNow();
    }
    outbox.push([job.msg, bytes]);
    // A long turn answers in parts, so that its caller works on the first replies while the
    // rest run: caller and host overlap instead of taking turns. A part leaves once its first
    // reply has waited OUTBOX_HOLD_MS: every message costs the server and the caller a wakeup,
    // which outweighs the overlap for calls that take microseconds.
    if (outbox.length === 1) outboxSince = performance.now();
    else if (batching === 0 && performance.now() - outboxSince >= OUTBOX_HOLD_MS) flushOutbox();
    if (outbox.length > 0) outboxFlush ??= setImmediate(flushOutbox);
  };

  const settle = (job: HostedCall) => {
    job.settled = true;
    if (live.get(job.callId) === job) live.delete(job.callId);
    // Deadlines are kept by the timeout they were added with: the same value finds the entry.
    if (job.watchedMs > 0) running.delete(job, job.watchedMs);
  };

  const streams = new Map<string, HostStream>();
  let nextStream = 0;

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
      large: { chunks, subjects, deadline: job.deadline },
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

  // A relayed reply is bytes; only failures are decoded, and only when metrics are on.
  const relayedCode = (bytes: Uint8Array): string => {
    try {
      const code = codec.decode<[1, WireError]>(bytes)[1]?.code;
      return typeof code === "string" && errorClassFor(code) ? code : "OTHER";
    } catch {
      return "OTHER";
    }
  };

  // A plain method's value as it returns it: a promise only when it returns one, so that a
  // result there at once is answered in the same pass as the message that brought the call.
  const invoke = (job: HostedCall): unknown =>
    relay ? relay(job, job.msg.data) : job.chunked ? pullArgs(job).then(() => target[job.method]!(...job.args!)) : target[job.method]!(...job.args!);

  // Arguments sent in chunks: pulled once the call has its slot, within its deadline and
  // cancellable like the method (a cancel or the deadline aborts the pull and frees the buffer).
  const pullArgs = async (job: HostedCall) => {
    const bytes = await chunks.resolve(job.msg.data, job.deadline, job.signal, `the arguments of ${name}.${job.method}`);
    job.args = decodeArgList(bytes, name, codec);
    job.chunked = false;
  };

  const run = (job: HostedCall): Promise<void> | undefined => {
    if (job.cancelled) {
      // Answered when it was cancelled; only its place in the queue was left.
      cancelledQueued--;
      return undefined;
    }
    if (job.settled) return undefined;
    const rec = calls.method(job.method);
    if (failing) {
      rec.count("SERVICE_UNAVAILABLE");
      reply(job, encodeErr(codec, new ServiceUnavailableError(`${name} is stopping`)));
      return undefined;
    }
    // The caller gave up already: running the method would be wasted work. The answer still
    // goes out (one small message) so that every request gets exactly one reply.
    if (Date.now() > job.deadline) {
      stats.expired();
      rec.count("CALL_TIMEOUT");
      reply(job, encodeErr(codec, new CallTimeoutError(`the call to ${name}.${job.method} waited past its deadline in the queue and did not run`, {
        details: { service: name, method: job.method },
      })));
      return undefined;
    }
    job.started = true;
    job.trace?.started();
    const t0 = performance.now();
    let value: unknown;
    try {
      value = runInCall(job, () => (job.trace ? job.trace.run(() => invoke(job)) : invoke(job)));
      if (isThenable(value)) return finishLater(job, rec, t0, value);
    } catch (err) {
      fail(job, rec, t0, err);
      return undefined;
    }
    return finish(job, rec, t0, value);
  };

  const finishLater = async (job: HostedCall, rec: MethodRecorder, t0: number, pending: PromiseLike<unknown>): Promise<void> => {
    let value: unknown;
    try {
      value = await pending;
    } catch (err) {
      return fail(job, rec, t0, err);
    }
    return finish(job, rec, t0, value);
  };

  /** Answers a call with what its method gave; a promise while the call streams. */
  const finish = (job: HostedCall, rec: MethodRecorder, t0: number, value: unknown): Promise<void> | undefined => {
    if (!relay && isAsyncIterable(value)) return stream(job, rec, t0, value);
    let out: Uint8Array;
    try {
      if (Date.now() > job.deadline) {
        // Its caller's deadline (never later than this one) has passed: it has a timeout, and
        // a value arriving now would contradict it.
        throw new CallTimeoutError(`the call to ${name}.${job.method} finished after its deadline`, { details: { service: name, method: job.method } });
      }
      // A large result waits in this connection's chunk store, for the caller to pull by the
      // call's deadline; the reply carries where.
      out = relay ? (value as Uint8Array) : chunks.encode([0, value], subjects, job.deadline, 1).payload;
    } catch (err) {
      // The result cannot be encoded (a CodecError) or came too late: not a failure of the host.
      return fail(job, rec, t0, err);
    }
    const ms = performance.now() - t0;
    // A relayed reply is bytes: its first element says whether it carries an error.
    const failed = relay !== undefined && out[1] === 1;
    if (rec.on) rec.done(t0, failed ? relayedCode(out) : "OK");
    // The reply first: the bookkeeping after it is not the caller's wait.
    reply(job, out);
    stats.record(ms, failed);
  };

  const stream = async (job: HostedCall, rec: MethodRecorder, t0: number, value: AsyncIterable<unknown>): Promise<void> => {
    try {
      await serveStreamed(job, job.trace ? job.trace.followStream(value) : value);
    } catch (err) {
      return fail(job, rec, t0, err);
    }
    job.trace?.end();
    stats.record(performance.now() - t0, false);
    rec.done(t0, "OK");
  };

  /** The method threw (a RemoteError for the caller) or its result cannot be sent. */
  const fail = (job: HostedCall, rec: MethodRecorder, t0: number, err: unknown): undefined => {
    job.trace?.fail(err);
    const out = encodeErr(codec, err);
    stats.record(performance.now() - t0, true, `${brief((err as Error)?.name ?? "Error", 100)}: ${brief(err)}`);
    rec.done(t0, codeOf(err));
    reply(job, out);
    return undefined;
  };

  const queue = createRunQueue(options.maxConcurrency, run);

  return {
    get running() {
      return queue.running;
    },
    get queued() {
      return queue.waiting - cancelledQueued;
    },
    post(job) {
      job.trace = spans.start(job.method, job.callId, job);
      const queued = queue.waiting - cancelledQueued;
      if (queued >= options.maxPending && queue.running >= options.maxConcurrency) {
        stats.rejected();
        calls.overloaded();
        calls.method(job.method).count("OVERLOADED");
        return reply(job, encodeErr(codec, new OverloadedError(
          `${name} is overloaded: ${queue.running} running and ${queued} queued (maxPending ${options.maxPending}); retry with backoff or add replicas`,
          { details: { service: name, running: queue.running, queued } },
        )));
      }
      job.onSignal = watchDeadline;
      // Only a rollable host (a replica) reads the header; a relay rolls it over its replicas instead.
      if (job.rollingHeader !== "" && !relay) queue.pushExclusive(job);
      else queue.push(job);
      // Known by id from here on, for a cancel or a drain to find: a call answered as it was
      // pushed (a synchronous method with a free slot) is over before anything could look.
      if (!job.settled) live.set(job.callId, job);
    },
    reply,
    batch(fn) {
      batching++;
      try {
        fn();
      } finally {
        batching--;
      }
      // Every call of the batch was answered at once: nothing is left to wait for.
      if (batching === 0 && live.size === 0 && outbox.length > 0) flushOutbox();
    },
    cancel(callId) {
      const job = live.get(callId);
      if (!job || job.settled) return;
      const err = new CancelledError(`the call to ${name}.${job.method} was cancelled by its caller`, { details: { service: name, method: job.method } });
      if (!job.started) {
        // Still queued: it never runs, and its place in maxPending is free now.
        job.cancelled = true;
        cancelledQueued++;
        stats.cancelled();
        calls.method(job.method).count("CANCELLED");
        // A direct caller has its CancelledError already and ignores this; a relay (the
        // service's registry face) waits for it to settle its own call now, not at the deadline.
        return reply(job, encodeErr(codec, err));
      }
      job.abort(err);
    },
    onStreamControl(msg) {
      const id = subjects.streamIdOf(msg.subject);
      if (id !== undefined) streams.get(id)?.onControl(msg.data);
    },
    async drain(graceMs) {
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
      flushOutbox();
      running.close();
    },
  };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";
}
