import type { NatsConnection } from "@nats-io/nats-core";
import { nuid } from "@nats-io/nats-core";
import { BATCH_HEADER, brief, headersOf, loggerCheck, MAX_BATCH_CALLS, sendReplies, unbatch, MAX_TIMER_MS, rateLimitedLogger, stderrLogger, wrapNatsConnection, type BusConnection, type Inbound, type Logger, type RequestOptions, type RateLimitedLogger, type Subscription } from "../connection/index.ts";
import { CallTimeoutError, ClosedError, CodecError, InvalidOptionsError, OverloadedError, type ActorBusError } from "../errors/index.ts";
import { encodeErr, respondSafely, unwrapReply } from "../reply/index.ts";
import { QUEUE_INFERENCE, subjectsFor, type Subjects } from "../subjects/index.ts";
import { chunksOf, isChunkRef, type Chunks } from "../chunks/index.ts";
import { RequestBuffer, type BufferedItem } from "./buffer.ts";
import { HeldRequests } from "./held.ts";
import { LeaseSubjects } from "./lease-subject.ts";
import { InferenceServerLostError, InferenceShutdownError, SHUTTING_DOWN_MESSAGE } from "./errors.ts";
import { defineOptions, durationMs, int, str, type SpecFor } from "../options/index.ts";
import { cancelledError, submitSignal, submitTimeoutMs, TRANSPORT_DEFAULTS } from "./options.ts";
import { ATTR, clientSpan, endSpan, putTraceHeaders, serverSpans, TRACE_HEADERS, tracerSource, type ServerSpan, type ServerSpans, type TraceTarget } from "../tracing/index.ts";
import { clientOf, type Drained, type InferenceClient, type InferenceTransport, type SubmitOptions } from "./transport.ts";

export interface NatsTransportOptions {
  /** A BusConnection (connectBus) or a nats.js NatsConnection, which stays the caller's to close. */
  connection: BusConnection | NatsConnection;
  namespace: string;
  /** The inference server's name: requests go to `ab.<namespace>.inf.<name>`. */
  name: string;
  /** Client side: default deadline of a call (ms). */
  timeoutMs?: number;
  /** Server side: requests buffered beyond this are refused at once with OverloadedError. */
  maxBuffered?: number;
  /**
   * Client side: how long the server holding a request may stay silent before the call fails
   * with InferenceServerLostError. Servers renew held requests every leaseMs/4, so it must
   * exceed the longest stretch a server's event loop is blocked (a synchronous model call).
   */
  leaseMs?: number;
  /**
   * Server side: where malformed requests are reported, at most 10 lines per 10 s plus a
   * summary (default: stderr).
   */
  logger?: Logger;
}

/*
 * Wire format (msgpack through the connection's codec):
 *   request  [seq, leaseSubject, deadlineMs, leaseMs, input]    via transport.request
 *            leaseSubject as UTF-8 bytes (bin); servers take a string too (earlier clients)
 *   reply    [0, result] | [1, WireError]
 *   lease    [seq, seq, ...]   server -> leaseSubject: "I still hold these of yours"
 *
 * A request whose encoding is over the connection's chunk threshold (src/chunks) is held by the
 * client and announced as [seq, leaseSubject, deadlineMs, leaseMs, ref, 1], ref being the chunk
 * ref of the whole request as above: the server holds (renews, cancels) it while it pulls, and
 * the request is encoded once. A result over the threshold is held by the server; its reply is
 * the ref, which the client pulls. Servers before chunks refuse the 6-element form as malformed
 * rather than handing the model a ref.
 *
 * Requests and results of tensor records (plain objects of typed arrays and numbers) take the
 * codec's one-pass path (src/codec/small.ts), like any small plain value.
 *
 * Why leases: a request travels to one server of the queue group and NATS tells nobody if that
 * process dies. Renewals make the holder visible without an extra message per request: a call
 * answered within leaseMs/2 (the common case) costs exactly one request and one reply; a call
 * held longer is renewed every leaseMs/4; a call not renewed for leaseMs fails fast instead of
 * waiting for its deadline.
 */
const TE = new TextEncoder();
const BATCH_ONLY = [BATCH_HEADER] as const;
/** The request options of a call with neither signal nor trace context (most): made once. */
const COALESCE: RequestOptions = Object.freeze({ coalesce: true });
/** The last element of a request whose body travels in chunks. */
const CHUNKED = 1;

interface ClientPending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  /** performance.now() after which the holder counts as lost unless it renews. */
  leaseUntil: number;
  /** Set while the result is being pulled: stops the pull (cancel, close). */
  stopPull?: ((why: ActorBusError) => void) | undefined;
}

interface Held<I> extends BufferedItem<I> {
  input: I;
  readonly msg: Inbound;
  readonly seq: number;
  readonly leaseSubject: string;
  readonly leaseMs: number;
  /** The client's deadline as the chunk store counts time (epoch ms), read once on arrival. */
  readonly deadline: number;
  settled: boolean;
  /** The server's span of the request, while an OpenTelemetry SDK is registered. */
  trace: ServerSpan | undefined;
  /** Set while the request's body is pulled (it came in chunks): a cancel stops the pull. */
  pull?: AbortController | undefined;
}

const natsTransportOptions = defineOptions(
  "NatsTransport options",
  {
    connection: (v: unknown, key: string, where: string): BusConnection => {
      if (isBusConnection(v)) return v;
      if (isNatsConnection(v)) return wrapNatsConnection(v);
      throw new InvalidOptionsError(`${where}: connection must be a BusConnection (await connectBus()) or a nats.js NatsConnection`, { details: { option: key } });
    },
    // subjectsFor() checks the names themselves and says which characters are allowed.
    namespace: str(),
    name: str(),
    timeoutMs: durationMs({ min: 1, hint: "the default deadline of a call" }),
    maxBuffered: int({ min: 1, hint: "bound on requests a server queues" }),
    leaseMs: durationMs({ min: 20, hint: "raise it above your longest synchronous model call" }),
    logger: loggerCheck,
  } satisfies SpecFor<NatsTransportOptions>,
  { timeoutMs: TRANSPORT_DEFAULTS.timeoutMs, maxBuffered: TRANSPORT_DEFAULTS.maxBuffered, leaseMs: TRANSPORT_DEFAULTS.leaseMs },
  { example: '{ connection, namespace: "rl", name: "policy" }' },
);

function isBusConnection(c: unknown): c is BusConnection {
  return c !== null && typeof c === "object" && "transport" in c && "codec" in c && "onClose" in c;
}

function isNatsConnection(c: unknown): c is NatsConnection {
  return c !== null && typeof c === "object" && typeof (c as NatsConnection).publish === "function" && typeof (c as NatsConnection).subscribe === "function";
}

/**
 * Clients anywhere on the NATS network, servers sharing load through the queue group
 * "inference". One object can act as client (`submit`, `client()`) and as server transport
 * (`listen`, `drain`, ...); the InferenceServer drives the server side.
 */
export class NatsTransport<I = unknown, O = unknown> implements InferenceTransport<I, O>, AsyncDisposable {
  readonly name: string;
  readonly namespace: string;
  /** The subject requests are sent to. */
  readonly subject: string;
  private readonly conn: BusConnection;
  private readonly subjects: Subjects;
  private readonly chunks: Chunks;
  private readonly timeoutMs: number;
  private readonly maxBuffered: number;
  private readonly leaseMs: number;
  private readonly log: RateLimitedLogger;
  private closed = false;

  // client side
  private readonly pending = new Map<number, ClientPending>();
  private nextSeq = 1;
  private leaseSubject: string | undefined;
  /** The lease subject as requests carry it (see LeaseSubjects). */
  private leaseBytes: Uint8Array | undefined;
  private leaseSub: Subscription | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;

  // server side
  private readonly buffer: RequestBuffer<Held<I>>;
  /** Received and not answered yet (buffered or in a batch), by client: renewals and cancels. */
  private readonly heldItems = new HeldRequests<Held<I>>();
  private readonly leases: LeaseSubjects;
  private readonly cancelSubject: string;
  private cancelSub: Subscription | undefined;
  private serverSub: { drain(): Promise<void> } | undefined;
  private listening = false;
  private renewTimer: NodeJS.Timeout | undefined;
  private removeCloseHook: (() => void) | undefined;
  private heldEmptyWaiters: (() => void)[] = [];
  /** Requests whose body is being pulled: they count against maxBuffered like queued ones. */
  private pullingRequests = 0;
  /**
   * Results held in the chunk store for their client, by "<leaseSubject> <seq>", until their
   * deadline: a cancel arriving after the answer frees one at once instead of at its deadline.
   */
  private readonly heldResults = new Map<string, { id: string; until: number }>();

  // tracing: CLIENT spans of submits, SERVER spans of requests (only while an SDK is registered)
  private readonly tracer = tracerSource();
  private readonly traced: TraceTarget;
  private readonly spans: ServerSpans;

  constructor(opts: NatsTransportOptions) {
    const o = natsTransportOptions.parse(opts);
    if (o.connection === undefined) throw new InvalidOptionsError(`${natsTransportOptions.where}: connection is required: a BusConnection (await connectBus()) or a nats.js NatsConnection`, { details: { option: "connection" } });
    this.conn = o.connection;
    const subjects = subjectsFor(o.namespace as string);
    this.subjects = subjects;
    this.chunks = chunksOf(this.conn);
    this.namespace = subjects.namespace;
    this.subject = subjects.inference(o.name as string);
    this.cancelSubject = subjects.inferenceCancel(o.name as string);
    this.leases = new LeaseSubjects(`${this.subject}.lease.`);
    this.name = o.name as string;
    this.timeoutMs = o.timeoutMs;
    this.maxBuffered = o.maxBuffered;
    this.leaseMs = o.leaseMs;
    this.log = rateLimitedLogger(o.logger ?? stderrLogger());
    this.traced = { namespace: this.namespace, service: this.name, subject: this.subject };
    this.spans = serverSpans(this.tracer, this.traced, this.conn.codec);
    // A request whose caller's deadline passed in the queue is still answered (its caller is
    // gone, the reply is dropped): every request gets exactly one reply.
    this.buffer = new RequestBuffer<Held<I>>((item) => this.answer(item, encodeErr(this.conn.codec, new CallTimeoutError(
      `inference request to ${this.subject} waited past its deadline in the queue and did not run`,
      { details: { subject: this.subject } },
    ))));
  }

  // ---------------------------------------------------------------- client side

  submit(input: I, opts?: SubmitOptions): Promise<O> {
    if (this.closed) return Promise.reject(new ClosedError(`NatsTransport for ${this.subject} is closed`));
    let timeoutMs: number;
    try {
      timeoutMs = submitTimeoutMs(opts, this.timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    const signal = submitSignal(opts);
    if (signal?.aborted) return Promise.reject(cancelledError());
    const leaseSubject = this.ensureLeaseSubscription();
    const seq = this.nextSeq++;
    const deadline = Date.now() + timeoutMs;
    let bytes: Uint8Array;
    let held: string | undefined;
    try {
      // Small requests: the bytes of today, encoded once; a large one is held for the server to pull.
      const out = this.chunks.encode([seq, this.leaseBytes, timeoutMs, this.leaseMs, input], this.subjects, deadline, 1);
      bytes = out.payload;
      held = out.id;
      if (held !== undefined) bytes = this.conn.codec.encode([seq, this.leaseBytes, timeoutMs, this.leaseMs, bytes, CHUNKED]);
    } catch (err) {
      if (held !== undefined) this.chunks.drop(held);
      return Promise.reject(err);
    }
    const span = clientSpan(this.tracer, this.traced, "infer", undefined);
    // One promise of our own (the lease check settles it too) over the transport's; the
    // handlers below are the only closures a call without a signal allocates.
    let resolveCall!: (v: unknown) => void;
    let rejectCall!: (e: unknown) => void;
    const call = new Promise<O>((resolve, reject) => {
      resolveCall = resolve as (v: unknown) => void;
      rejectCall = reject;
    });
    const p: ClientPending = { resolve: resolveCall, reject: rejectCall, leaseUntil: performance.now() + this.leaseMs };
    this.pending.set(seq, p);
    if (held !== undefined) {
      // Held until the server released it after pulling, or now that the call is over however it ended.
      const id = held;
      const drop = () => this.chunks.drop(id);
      call.then(drop, drop);
    }
    this.armLeaseCheck();
    let forget: (() => void) | undefined;
    if (signal) {
      const onAbort = () => {
        if (this.pending.get(seq) !== p) return;
        this.pending.delete(seq);
        // Whichever server holds it drops it from its queue (or ignores it mid-batch).
        this.conn.transport.publish(this.cancelSubject, this.conn.codec.encode([leaseSubject, seq]));
        const err = cancelledError();
        p.stopPull?.(err);
        p.reject(err);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      forget = () => signal.removeEventListener("abort", onAbort);
    }
    let options: RequestOptions = COALESCE;
    if (signal || span) {
      const headers: Record<string, string> | undefined = span ? {} : undefined;
      if (span) putTraceHeaders(headers!, span);
      options = { signal, headers, coalesce: true };
    }
    this.conn.transport.request(this.subject, bytes, timeoutMs, options).then(
      (reply) => {
        if (this.pending.get(seq) !== p) return forget?.(); // already failed by the lease check
        if (isChunkRef(reply)) return this.pullResult(seq, p, reply, deadline, forget);
        forget?.();
        this.pending.delete(seq);
        try {
          p.resolve(unwrapReply<O>(this.conn.codec, reply, this.subject));
        } catch (err) {
          p.reject(err);
        }
      },
      (err) => {
        forget?.();
        if (this.pending.get(seq) !== p) return;
        this.pending.delete(seq);
        p.reject(err);
      },
    );
    return endSpan(span, call);
  }

  /**
   * The result came as a chunk ref. The call stays pending, so a cancel or close() still reaches
   * it, but off the lease check: the server let the request go when it answered, and the pull
   * itself notices a holder that died.
   */
  private pullResult(seq: number, p: ClientPending, ref: Uint8Array, deadline: number, forget: (() => void) | undefined): void {
    p.leaseUntil = Infinity;
    const stop = new AbortController();
    p.stopPull = (why) => stop.abort(why);
    const done = () => {
      forget?.();
      p.stopPull = undefined;
      if (this.pending.get(seq) !== p) return false;
      this.pending.delete(seq);
      return true;
    };
    this.chunks.resolve(ref, deadline, stop.signal, `the result of inference request ${seq} to ${this.subject}`).then(
      (bytes) => {
        if (!done()) return;
        try {
          p.resolve(unwrapReply<O>(this.conn.codec, bytes, this.subject));
        } catch (err) {
          p.reject(err);
        }
      },
      (err) => done() && p.reject(err),
    );
  }

  client(): InferenceClient<I, O> {
    return clientOf(this);
  }

  /** Calls waiting for a reply from this client. */
  get inFlight(): number {
    return this.pending.size;
  }

  private ensureLeaseSubscription(): string {
    if (this.leaseSubject) return this.leaseSubject;
    const subject = subjectsFor(this.namespace).inferenceLease(this.name, nuid.next());
    // Subscribed before the first request is published on the same connection, so the NATS
    // server knows the lease subject before any server can renew to it.
    this.leaseSub = this.conn.transport.subscribe(subject, (msg) => this.onLease(msg));
    this.leaseSubject = subject;
    this.leaseBytes = TE.encode(subject);
    return subject;
  }

  private onLease(msg: Inbound): void {
    let seqs: unknown;
    try {
      seqs = this.conn.codec.decode(msg.data);
    } catch {
      return;
    }
    if (!Array.isArray(seqs)) return;
    const until = performance.now() + this.leaseMs;
    for (const s of seqs) {
      const p = this.pending.get(s as number);
      if (p) p.leaseUntil = until;
    }
  }

  private armLeaseCheck(): void {
    if (this.leaseTimer || this.pending.size === 0) return;
    const periodMs = Math.max(5, this.leaseMs / 4);
    const armedAt = performance.now();
    this.leaseTimer = setTimeout(() => {
      this.leaseTimer = undefined;
      // Timers run before I/O in Node's loop: after a long block here, renewals already in the
      // socket must be read before leases are judged, or a healthy server would look dead.
      setImmediate(() => {
        const now = performance.now();
        if (now - armedAt > 2 * periodMs) {
          // This process stalled (GC, a synchronous call): servers in it could not renew, and
          // renewals from others may still be in flight. Silence we slept through is not
          // evidence; give every holder two periods to speak again.
          for (const p of this.pending.values()) p.leaseUntil = Math.max(p.leaseUntil, now + 2 * periodMs);
        } else {
          this.expireLeases(now);
        }
        this.armLeaseCheck();
      });
    }, periodMs);
    this.leaseTimer.unref();
  }

  private expireLeases(now: number): void {
    for (const [seq, p] of this.pending) {
      if (p.leaseUntil > now) continue;
      this.pending.delete(seq);
      p.reject(
        new InferenceServerLostError(
          `inference server for ${this.subject} went silent for ${this.leaseMs} ms while holding the call (process killed, host lost or event loop blocked); the request may or may not have run`,
          { details: { subject: this.subject, leaseMs: this.leaseMs } },
        ),
      );
    }
  }

  // ---------------------------------------------------------------- server side

  async listen(): Promise<void> {
    if (this.closed) throw new ClosedError(`NatsTransport for ${this.subject} is closed`);
    if (this.listening) return;
    this.listening = true;
    const onRequest = (msg: Inbound) => this.onRequest(msg);
    // A handler that throws is a bug of ours: the requester still hears, the server keeps serving.
    const onError = (msg: Inbound, err: unknown) => {
      this.log.warn("inference request handler failed", { subject: this.subject, reason: brief(err) });
      this.reply(msg, err);
    };
    // Drained on shutdown: requests already routed to us are still delivered and answered (with
    // InferenceShutdownError) instead of being dropped silently. Through the transport, so the
    // subscription follows the connection off a server in lame-duck mode.
    const sub = this.conn.transport.subscribe(this.subject, onRequest, { queue: QUEUE_INFERENCE, onError });
    this.serverSub = { drain: () => (sub.drain ? sub.drain().catch(() => {}) : Promise.resolve(sub.unsubscribe())) };
    this.cancelSub = this.conn.transport.subscribe(this.cancelSubject, (msg) => this.onCancel(msg), {
      onError: (_m, err) => this.log.warn("inference cancel handler failed", { subject: this.cancelSubject, reason: brief(err) }),
    });
    this.removeCloseHook = this.conn.onClose(() => this.onConnectionClose());
    await this.conn.transport.flush();
  }

  /** A client cancelled: a queued request never reaches the model; one in a batch gets no reply. */
  private onCancel(msg: Inbound): void {
    let key: unknown;
    try {
      key = this.conn.codec.decode(msg.data);
    } catch {
      return;
    }
    if (!Array.isArray(key) || typeof key[0] !== "string" || typeof key[1] !== "number") return;
    const h = this.heldItems.get(key[0], key[1]);
    if (!h || h.settled) {
      // Answered already: a result still held for the client goes now, not at its deadline.
      if (this.heldResults.size > 0) this.dropResult(`${key[0]} ${key[1]}`);
      return;
    }
    h.cancelled = true;
    h.trace?.endWith("CANCELLED");
    this.release(h);
    h.pull?.abort();
  }

  private dropResult(key: string): void {
    const r = this.heldResults.get(key);
    if (!r) return;
    this.heldResults.delete(key);
    this.chunks.drop(r.id);
  }

  /** Remembers a result held in chunks for a late cancel; forgets those past their deadline. */
  private keepResult(h: Held<I>, id: string, until: number): void {
    const now = Date.now();
    // Roughly in deadline order: stop at the first one still live rather than walk them all.
    for (const [k, r] of this.heldResults) {
      if (r.until > now) break;
      this.heldResults.delete(k);
    }
    this.heldResults.set(`${h.leaseSubject} ${h.seq}`, { id, until });
  }

  async stopListening(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    this.removeCloseHook?.();
    this.removeCloseHook = undefined;
    const sub = this.serverSub;
    this.serverSub = undefined;
    this.cancelSub?.unsubscribe();
    this.cancelSub = undefined;
    await sub?.drain();
    this.log.flush();
  }

  drain(maxItems: number): Drained<I> {
    const items = this.buffer.take(maxItems);
    const n = items.length;
    const inputs = new Array<I>(n);
    const receivedAt = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const h = items[i]!;
      inputs[i] = h.input;
      receivedAt[i] = h.receivedAt;
      h.trace?.started({ [ATTR.batchSize]: n });
    }
    return { inputs, callbacks: items, receivedAt };
  }

  waitForWork(timeoutMs: number): Promise<void> {
    return this.buffer.waitForWork(timeoutMs);
  }

  resolve(callback: unknown, result: O): void {
    const h = callback as Held<I>;
    if (h.settled) return;
    let bytes: Uint8Array;
    try {
      // The client's deadline, as the store counts time: a result it cannot pull by then goes.
      const deadline = h.deadline;
      const out = this.chunks.encode([0, result], this.subjects, deadline, 1);
      bytes = out.payload;
      if (out.id !== undefined) {
        if (deadline <= Date.now()) {
          // Its caller has given up: nobody would pull it, so it is not kept even for the grace period.
          this.chunks.drop(out.id);
          bytes = encodeErr(this.conn.codec, new CallTimeoutError(`inference request to ${this.subject} finished after its deadline`, { details: { subject: this.subject } }));
        } else this.keepResult(h, out.id, deadline);
      }
    } catch (err) {
      bytes = encodeErr(this.conn.codec, err);
    }
    this.answer(h, bytes);
  }

  resolveException(callback: unknown, error: unknown): void {
    const h = callback as Held<I>;
    if (h.settled) return;
    h.trace?.fail(error);
    this.answer(h, encodeErr(this.conn.codec, error));
  }

  /** Requests waiting for the server loop to drain them. */
  get buffered(): number {
    return this.buffer.size;
  }

  get expired(): number {
    return this.buffer.expired;
  }

  /** Requests this server has received and not answered yet (buffered or in a batch). */
  get held(): number {
    return this.heldItems.size;
  }

  /** Why a decoded request cannot be served, or undefined if it is well formed (its lease subject aside). */
  private malformed(req: unknown): string | undefined {
    if (!Array.isArray(req) || (req.length !== 5 && !isChunked(req))) return "expected [seq, leaseSubject, deadlineMs, leaseMs, input]";
    const [seq, , deadlineMs, leaseMs] = req;
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) return "seq must be an integer >= 0";
    if (typeof deadlineMs !== "number" || !Number.isFinite(deadlineMs) || deadlineMs <= 0) return "deadlineMs must be a finite number of milliseconds > 0";
    if (typeof leaseMs !== "number" || !Number.isFinite(leaseMs) || leaseMs < 20) return "leaseMs must be a finite number of milliseconds >= 20";
    return undefined;
  }

  private onRequest(msg: Inbound): void {
    // Requests submitted in the same tick by one client arrive as one message (src/connection/batch.ts).
    const [batch] = headersOf(msg, BATCH_ONLY);
    if (!batch) return this.hold(msg);
    let requests: Inbound[];
    try {
      requests = unbatch(msg, batch, MAX_BATCH_CALLS, this.publishReply);
    } catch (err) {
      this.log.warn("malformed inference request", { subject: this.subject, bytes: msg.data.length, reason: brief(err) });
      this.reply(msg, err);
      return;
    }
    // One request each: a call of a batch is never a batch itself (clients do not nest them).
    for (const r of requests) this.hold(r);
  }

  /** One request: refused at once, or queued for the loop and held (renewed) until answered. */
  private hold(msg: Inbound): void {
    if (!msg.reply) {
      // Clients always ask for a reply: this is someone else's publish, and nobody would hear the result.
      this.log.warn("inference request without reply subject dropped", { subject: this.subject, bytes: msg.data.length });
      return;
    }
    if (!this.listening) {
      this.reply(msg, new InferenceShutdownError(SHUTTING_DOWN_MESSAGE, { details: { subject: this.subject } }));
      return;
    }
    if (this.buffer.size + this.pullingRequests >= this.maxBuffered) {
      this.reply(msg, new OverloadedError(`inference server ${this.subject} has ${this.maxBuffered} requests queued; back off and retry`, { details: { subject: this.subject, maxBuffered: this.maxBuffered } }));
      return;
    }
    let req: unknown;
    try {
      req = this.conn.codec.decode(msg.data);
    } catch (err) {
      this.log.warn("malformed inference request", { subject: this.subject, bytes: msg.data.length, reason: brief(err) });
      this.reply(msg, err);
      return;
    }
    let why = this.malformed(req);
    const leaseSubject = why ? undefined : this.leases.read((req as unknown[])[1]);
    if (!why && leaseSubject === undefined) why = `leaseSubject must be ${this.leases.prefix}<client id>`;
    if (why) {
      this.log.warn("malformed inference request", { subject: this.subject, bytes: msg.data.length, reason: why });
      this.reply(msg, new CodecError(`malformed inference request on ${this.subject}: ${why}; send it with NatsTransport.submit`, { details: { subject: this.subject } }));
      return;
    }
    const r = req as [number, unknown, number, number, unknown];
    const now = performance.now();
    const h: Held<I> = {
      input: r[4] as I,
      msg,
      seq: r[0],
      leaseSubject: leaseSubject!,
      leaseMs: r[3],
      receivedAt: now,
      expiresAt: now + r[2],
      deadline: Date.now() + r[2],
      settled: false,
      trace: undefined,
    };
    if (this.tracer()) h.trace = this.spans.start("infer", undefined, traceOf(msg));
    this.heldItems.add(h);
    if (r.length === 5) this.buffer.push(h);
    else this.pullRequest(h, r[4] as Uint8Array, h.deadline);
    this.armRenew();
  }

  /**
   * A request in chunks is held (renewed, cancellable) while its body is pulled, and queued for
   * the model once it is in; a failed pull is its answer.
   */
  private pullRequest(h: Held<I>, ref: Uint8Array, deadline: number): void {
    h.pull = new AbortController();
    this.pullingRequests++;
    this.chunks.resolve(ref, deadline, h.pull.signal, `inference request ${h.seq} to ${this.subject}`).then(
      (bytes) => {
        this.pullingRequests--;
        h.pull = undefined;
        if (h.settled) return;
        let req: unknown;
        try {
          req = this.conn.codec.decode(bytes);
        } catch (err) {
          return this.answer(h, encodeErr(this.conn.codec, err));
        }
        if (!Array.isArray(req) || req.length !== 5 || this.malformed(req) || req[0] !== h.seq) {
          return this.answer(h, encodeErr(this.conn.codec, new CodecError(`malformed inference request on ${this.subject}: its chunks do not hold [seq, leaseSubject, deadlineMs, leaseMs, input] of request ${h.seq}`, { details: { subject: this.subject } })));
        }
        // The loop may have stopped while the body was on its way: nothing would drain it now.
        if (!this.listening) return this.answer(h, encodeErr(this.conn.codec, new InferenceShutdownError(SHUTTING_DOWN_MESSAGE, { details: { subject: this.subject } })));
        h.input = req[4] as I;
        this.buffer.push(h);
      },
      (err) => {
        this.pullingRequests--;
        h.pull = undefined;
        if (!h.settled) this.answer(h, encodeErr(this.conn.codec, err));
      },
    );
  }

  private reply(msg: Inbound, error: unknown): void {
    this.send(msg, encodeErr(this.conn.codec, error));
  }

  /**
   * A model batch answers its requests in one loop: replies to one client's coalesced requests
   * leave combined, at the end of that loop (a microtask later).
   */
  private send(msg: Inbound, bytes: Uint8Array): void {
    this.outbox.push([msg, bytes]);
    if (this.outbox.length === 1) queueMicrotask(this.flushOutbox);
  }

  private readonly outbox: [Inbound, Uint8Array][] = [];
  private readonly flushOutbox = () => sendReplies(this.outbox.splice(0), this.conn.transport.maxPayload, this.publishReply, (m, b) => this.sendNow(m, b));
  private readonly publishReply = (subject: string, data: Uint8Array) => {
    try {
      this.conn.transport.publish(subject, data);
    } catch (err) {
      this.log.warn("inference reply not sent", { subject: this.subject, reason: brief(err) });
    }
  };

  /** Never throws; a reply over max_payload goes out as a CodecError saying so. */
  private sendNow(msg: Inbound, bytes: Uint8Array): void {
    const problem = respondSafely(msg, bytes, this.conn.codec, this.conn.transport.maxPayload);
    if (problem) this.log.warn("inference reply not sent as is", { subject: this.subject, reason: problem });
  }

  private answer(h: Held<I>, bytes: Uint8Array): void {
    h.trace?.end(bytes);
    this.release(h);
    this.send(h.msg, bytes);
  }

  private release(h: Held<I>): void {
    h.settled = true;
    this.heldItems.remove(h);
    if (this.heldItems.size === 0 && this.heldEmptyWaiters.length > 0) {
      const ws = this.heldEmptyWaiters;
      this.heldEmptyWaiters = [];
      for (const w of ws) w();
    }
  }

  private armRenew(): void {
    if (this.renewTimer || this.heldItems.size === 0) return;
    let minLease = Infinity;
    for (const [, held] of this.heldItems.clients()) for (const h of held.values()) if (h.leaseMs < minLease) minLease = h.leaseMs;
    // A huge leaseMs must not wrap setTimeout into a busy loop of renewals.
    const periodMs = Math.min(MAX_TIMER_MS, Math.max(5, Math.floor(minLease / 4)));
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      this.renew(periodMs);
      this.armRenew();
    }, periodMs);
    this.renewTimer.unref();
  }

  /**
   * Renews requests held for at least one period; younger ones are still inside the lease the
   * client started at send time, which keeps fast calls free of lease traffic.
   */
  private renew(periodMs: number): void {
    const cutoff = performance.now() - periodMs;
    this.heldItems.prune();
    for (const [subject, held] of this.heldItems.clients()) {
      const seqs: number[] = [];
      for (const h of held.values()) if (h.receivedAt <= cutoff) seqs.push(h.seq);
      if (seqs.length === 0) continue;
      try {
        this.conn.transport.publish(subject, this.conn.codec.encode(seqs));
      } catch {
        // Connection closed (every client's lease lapses) or this one subject refused: the
        // other clients must still be renewed.
      }
    }
  }

  /** Connection closing under a listening server: refuse what is queued, let the batch finish. */
  private async onConnectionClose(): Promise<void> {
    await this.stopListening();
    const err = new InferenceShutdownError(SHUTTING_DOWN_MESSAGE, { details: { subject: this.subject } });
    for (const h of this.buffer.takeAll()) this.resolveException(h, err);
    if (this.heldItems.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5_000);
        this.heldEmptyWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Client side: fails calls in flight with ClosedError and drops the lease subscription.
   * Server side: stops listening. The connection stays open (it is the caller's). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stopListening();
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    this.leaseTimer = undefined;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    this.leaseSub?.unsubscribe();
    this.leaseSub = undefined;
    const err = new ClosedError(`NatsTransport for ${this.subject} was closed while the call was in flight`);
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      p.stopPull?.(err);
      p.reject(err);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** [seq, leaseSubject, deadlineMs, leaseMs, ref, 1]: a request whose body is held in chunks. */
function isChunked(req: unknown[]): boolean {
  return req.length === 6 && req[5] === CHUNKED && req[4] instanceof Uint8Array && isChunkRef(req[4]);
}

/** The W3C trace context a request carries (read only when a span is to be made). */
function traceOf(msg: Inbound): { traceparent: string; tracestate: string } {
  const [traceparent, tracestate] = headersOf(msg, TRACE_HEADERS);
  return { traceparent, tracestate };
}
