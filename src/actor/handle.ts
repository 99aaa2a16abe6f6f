import { callSettings, createCallIds, mergeCallOptions, ROLLING, sendableMethod, WITH_OPTIONS, type CallSettings, type ResolvedCallOptions, type ResolvedRollingOptions } from "../call/index.ts";
import { chunksOf, isChunkRef, type ChunkedPayload, type Chunks } from "../chunks/index.ts";
import type { BusConnection } from "../connection/index.ts";
import { CodecError, InvalidOptionsError, ServiceUnavailableError, type ActorBusError } from "../errors/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { durationMs } from "../options/index.ts";
import { codeOf, NO_METRICS, type MethodRecorder, type MetricsSink } from "../metrics/index.ts";
import { unwrapReply } from "../reply/index.ts";
import { requestCall, type OutgoingCall } from "./send-call.ts";
import type { DirectRoutes } from "../registry/direct-routes.ts";
import { materialize, StreamOpening, streamable } from "../stream/index.ts";
import { clientSpan, endSpan, tracerSource, type TraceTarget } from "../tracing/index.ts";

type AnyFn = (...args: any[]) => any;
type MethodKeys<T> = { [K in keyof T]: T[K] extends AnyFn ? K : never }[keyof T] & string;

/**
 * A typed proxy to a service: each method of T becomes an async remote call.
 * `const ids = await tok.encode("hi")` is `Promise<number[]>` for `encode(s): number[]`.
 */
export type ServiceHandle<T> = {
  readonly [K in MethodKeys<T>]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Remote<R> : never;
};

/**
 * What a remote call returns: a method returning an AsyncIterable (an async generator) streams,
 * typed as AsyncIterable of its items; anything else is a Promise of its awaited result.
 */
export type Remote<R> = [R] extends [never] ? Promise<never> : R extends AsyncIterable<infer Y> ? AsyncIterable<Y> : Promise<Awaited<R>>;

export interface HandleParams {
  conn: BusConnection;
  subjects: Subjects;
  name: string;
  timeoutMs: number;
  /**
   * Turns "nobody listens" into the most useful error (e.g. ServiceNotFoundError when the name
   * is not registered at all); called only on that failure.
   */
  explainUnavailable?: (err: ServiceUnavailableError, deadline: number) => Promise<ActorBusError>;
  /** Per-call options bound by withOptions(). */
  callOptions?: ResolvedCallOptions;
  /** Where the handle's calls are counted and timed (default: nowhere, at no cost). */
  metrics?: MetricsSink;
  /** The service's declared methods, when known (the registry record): other names count as "other". */
  methods?: readonly string[];
  /**
   * Whether the service is replicated (launched with asService()), which only those can roll
   * (`rolling(handle)`): asked when a roll is made, from the registry record.
   */
  isReplicated?: () => Promise<boolean>;
  /**
   * Routes calls straight to a replicated service's replicas (src/registry/direct-routes.ts);
   * asked on each call, so the routes start with the first one. Undefined: every call goes to
   * the service's subject.
   */
  direct?: () => DirectRoutes | undefined;
}

// Names that generic code probes on any object (await, JSON.stringify, util.inspect, test
// matchers). Answering them with remote calls would send calls nobody made.
const NOT_REMOTE = new Set(["then", "catch", "finally", "toJSON", "constructor", "valueOf", "toString", "toLocaleString", "inspect", "asymmetricMatch", "$$typeof", "nodeType"]);

const HANDLE_INFO = Symbol.for("actorbus.handle");

export interface HandleInfo {
  name: string;
  namespace: string;
  timeoutMs: number;
}

/** The service name, namespace and deadline behind a handle (undefined for other values). */
export function handleInfo(value: unknown): HandleInfo | undefined {
  return (value as Record<symbol, HandleInfo> | null)?.[HANDLE_INFO];
}

// Every handle's deadline passes here, whichever default it came from (caller, registry record,
// registry): a NaN or oversized one would make a call that never times out.
const checkDeadline = durationMs({ min: 1, hint: "pass timeoutMs to get()/at(), or fix the service's timeoutMs" });

export function createHandle<T>(p: HandleParams): ServiceHandle<T> {
  const { conn, subjects, name } = p;
  const timeoutMs = checkDeadline(p.timeoutMs, "timeoutMs", `handle of "${name}"`);
  const subject = subjects.call(name);
  const { codec, transport } = conn;
  const chunks = chunksOf(conn);
  const cache = new Map<string, AnyFn>();
  const info: HandleInfo = { name, namespace: subjects.namespace, timeoutMs };

  const nextId = createCallIds();
  const opts = p.callOptions;
  const metered = (p.metrics ?? NO_METRICS).client(subjects.namespace, name, p.methods);
  const tracer = tracerSource();
  const traced: TraceTarget = { namespace: subjects.namespace, service: name, subject };

  // Made with the first call (a registry closed before gives none): one lookup per handle, not per call.
  let direct: DirectRoutes | null | undefined;
  const call = (method: string, args: unknown[], rec: MethodRecorder, rolling?: ResolvedRollingOptions): Promise<unknown> => {
    const s = callSettings(timeoutMs, opts);
    let out: ChunkedPayload;
    try {
      // Arguments over the threshold wait in this connection's chunk store until the call settles.
      out = chunks.encode(args, subjects, s.deadline, Infinity);
    } catch (err) {
      return Promise.reject(err);
    }
    const callId = nextId();
    const span = clientSpan(tracer, traced, method, callId); // undefined while no SDK is registered
    const outgoing: OutgoingCall = { method, callId, deadline: s.deadline, meta: s.meta, signal: s.signal, minVersion: opts?.minVersion, rolling, trace: span };
    // A roll is the registry face's to run; any other call may go straight to a replica.
    if (p.direct && direct === undefined) direct = p.direct() ?? null;
    let sent = (rolling === undefined ? direct?.send(out.payload, outgoing, subject) : undefined) ?? requestCall(transport, subjects, subject, out.payload, outgoing);
    if (out.id !== undefined) {
      const id = out.id;
      sent = sent.finally(() => chunks.drop(id));
    }
    // The clock starts once the arguments are encoded: the histogram is the time on the wire and the host.
    const pending = new PendingCall(ends, method, s, rec, rec.on ? performance.now() : 0);
    // Anonymous arrows, one object: per-call functions with names cost a defineProperty each
    // where the code is built with keepNames (tsx, esbuild), a tenth of a call's CPU.
    return streamable(endSpan(span, sent.then((bytes) => pending.reply(bytes), (err) => pending.fail(err))));
  };

  // Asking the registry why nobody listens happens within what is left of the call's deadline.
  const explain = async (err: unknown, deadline: number): Promise<never> => {
    if (err instanceof ServiceUnavailableError && p.explainUnavailable) throw await p.explainUnavailable(err, deadline);
    throw err;
  };
  const ends: HandleEnds = { codec, transport, chunks, name, idleTimeoutMs: opts?.idleTimeoutMs, explain };

  // `rolling(handle).method(...)`: the call with the Ab-Rolling header; the service's registry
  // face rolls it over the replicas and answers with their results, in replica order. A plain
  // service would run it once and answer one result, so the registry is asked first.
  const rollingForm = (ro: ResolvedRollingOptions) =>
    new Proxy(Object.create(null), {
      get(_t, prop) {
        if (typeof prop === "symbol" || NOT_REMOTE.has(prop)) return undefined;
        return async (...args: unknown[]) => {
          if (!sendableMethod(prop)) throw new CodecError(`method name ${JSON.stringify(prop.slice(0, 80))} cannot be sent: 1..256 characters without control characters`);
          if (p.isReplicated && !(await p.isReplicated())) {
            throw new InvalidOptionsError(`rolling() takes a replicated service (launched with asService()); "${name}" in namespace "${subjects.namespace}" is served without replicas to roll`, {
              details: { service: name },
            });
          }
          return call(prop, args, metered.method(prop), ro);
        };
      },
    });

  return new Proxy(Object.create(null), {
    get(_t, prop) {
      if (prop === HANDLE_INFO) return info;
      if (prop === ROLLING) return rollingForm;
      if (prop === WITH_OPTIONS) return (more: ResolvedCallOptions) => createHandle<T>({ ...p, callOptions: mergeCallOptions(opts, more) });
      if (prop === Symbol.for("nodejs.util.inspect.custom")) return () => `ServiceHandle(${subjects.namespace}/${name})`;
      if (typeof prop === "symbol" || NOT_REMOTE.has(prop)) return undefined;
      let fn = cache.get(prop);
      if (!fn) {
        // A name the Ab-Call header cannot carry is checked once here, not on every call.
        if (!sendableMethod(prop)) {
          const err = new CodecError(`method name ${JSON.stringify(prop.slice(0, 80))} cannot be sent: 1..256 characters without control characters`);
          return () => Promise.reject(err);
        }
        const rec = metered.method(prop);
        cache.set(prop, (fn = (...args: unknown[]) => call(prop, args, rec)));
      }
      return fn;
    },
    has: (_t, prop) => typeof prop === "string" && !NOT_REMOTE.has(prop),
    set: () => false,
  }) as ServiceHandle<T>;
}

/** What a handle's calls share once their request is sent. */
interface HandleEnds {
  codec: BusConnection["codec"];
  transport: BusConnection["transport"];
  chunks: Chunks;
  name: string;
  idleTimeoutMs: number | undefined;
  explain(err: unknown, deadline: number): Promise<never>;
}

/**
 * One call from its request to its result: a reply is unwrapped (a result in chunks pulled
 * first), a stream opening becomes a pulling iterator, a failure is explained, and the call is
 * counted when metrics are on. Methods of one object rather than closures made per call.
 */
class PendingCall {
  constructor(
    private readonly h: HandleEnds,
    private readonly method: string,
    private readonly s: CallSettings,
    private readonly rec: MethodRecorder,
    /** performance.now() once the arguments were encoded (0 when metrics are off). */
    private readonly t0: number,
  ) {}

  private settle(bytes: Uint8Array): unknown {
    const v = unwrapReply(this.h.codec, bytes);
    // A small result costs a class test, not the label of a stream it does not open.
    if (!(v instanceof StreamOpening)) return v;
    return materialize(v, this.h.transport, this.h.codec, `${this.h.name}.${this.method}`, this.s.signal, this.h.idleTimeoutMs);
  }

  private pulled(bytes: Uint8Array): Promise<unknown> {
    return this.h.chunks.resolve(bytes, this.s.deadline, this.s.signal, `the result of ${this.h.name}.${this.method}`).then((b) => this.settle(b));
  }

  reply(bytes: Uint8Array): unknown {
    const rec = this.rec;
    // A result in chunks is pulled before it is unwrapped; a small one costs a byte test, no hop.
    if (!rec.on) return isChunkRef(bytes) ? this.pulled(bytes) : this.settle(bytes);
    const t0 = this.t0;
    if (isChunkRef(bytes)) {
      return this.pulled(bytes).then(
        (v) => (rec.done(t0, "OK"), v),
        (err: unknown) => {
          rec.done(t0, codeOf(err));
          throw err;
        },
      );
    }
    let v: unknown;
    try {
      v = this.settle(bytes);
    } catch (err) {
      rec.done(t0, codeOf(err));
      throw err;
    }
    rec.done(t0, "OK");
    return v;
  }

  fail(err: unknown): Promise<never> {
    const explained = this.h.explain(err, this.s.deadline);
    if (!this.rec.on) return explained;
    return explained.catch((e: unknown) => {
      this.rec.done(this.t0, codeOf(e));
      throw e;
    });
  }
}
