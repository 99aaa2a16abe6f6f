import { createCodec } from "../codec/index.ts";
import { CallTimeoutError, ClosedError, CodecError, ServiceUnavailableError } from "../errors/index.ts";
import { subjectMatches } from "../subjects/index.ts";
import type { BusConnection } from "./connection.ts";
import { createDeadlines } from "./deadlines.ts";
import { abortError, deliverGuarded, type Inbound, type InboundHeaders, type Transport } from "./transport.ts";

/**
 * The "local" backend's message bus: NATS semantics (queue groups, no-responders, deadlines,
 * max payload) in one process, so code unit-tested against it behaves the same on NATS.
 * Messages are still encoded, so values that NATS could not carry fail here too.
 */
export interface LocalBus {
  readonly transport: Transport;
  /** Key-value buckets by name; the registry builds its store over them. */
  readonly buckets: Map<string, unknown>;
}

interface LocalSub {
  subject: string;
  queue?: string;
  handler: (m: Inbound) => void;
  onError?: (m: Inbound, err: unknown) => void;
}

const LOCAL_MAX_PAYLOAD = 1024 * 1024; // nats-server's default, so oversize calls fail alike

export function createLocalBus(): LocalBus {
  const subs = new Set<LocalSub>();
  const rr = new Map<string, number>();
  let nextReply = 1;
  const waiting = new Map<number, { resolve(d: Uint8Array): void; reject(e: Error): void; subject: string; timeoutMs: number }>();
  const deadlines = createDeadlines<number>((id) => {
    const w = waiting.get(id);
    if (!w) return;
    waiting.delete(id);
    w.reject(new CallTimeoutError(`call to ${w.subject} timed out after ${w.timeoutMs} ms`, { details: { subject: w.subject, timeoutMs: w.timeoutMs } }));
  });

  /** Picks receivers like NATS: every plain subscriber, and one member of each queue group. */
  const receivers = (subject: string): LocalSub[] => {
    const plain: LocalSub[] = [];
    const groups = new Map<string, LocalSub[]>();
    for (const s of subs) {
      if (!subjectMatches(s.subject, subject)) continue;
      if (s.queue === undefined) plain.push(s);
      else {
        const k = `${s.subject} ${s.queue}`;
        let g = groups.get(k);
        if (!g) groups.set(k, (g = []));
        g.push(s);
      }
    }
    for (const [k, g] of groups) {
      const i = (rr.get(k) ?? 0) % g.length;
      rr.set(k, i + 1);
      plain.push(g[i]!);
    }
    return plain;
  };

  const deliver = (subject: string, data: Uint8Array, reply?: (d: Uint8Array) => void, headers?: InboundHeaders): number => {
    const to = receivers(subject);
    for (const s of to) {
      const msg: Inbound = {
        subject,
        data,
        headers,
        reply: reply ? "local" : undefined,
        respond: (d) => {
          if (!reply) return false;
          reply(d);
          return true;
        },
      };
      queueMicrotask(() => deliverGuarded(s.handler, msg, s.onError));
    }
    return to.length;
  };

  const transport: Transport = {
    maxPayload: LOCAL_MAX_PAYLOAD,
    request(subject, data, timeoutMs, options) {
      if (data.length > LOCAL_MAX_PAYLOAD) {
        return Promise.reject(new CodecError(`request of ${data.length} bytes exceeds the max_payload of ${LOCAL_MAX_PAYLOAD} bytes`, { details: { bytes: data.length } }));
      }
      const signal = options?.signal;
      if (signal?.aborted) return Promise.reject(abortError(signal, subject));
      const id = nextReply++;
      // Copied, as a NATS message would be: the sender may reuse its object.
      const headers = options?.headers ? localHeaders(options.headers) : undefined;
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          if (!waiting.delete(id)) return;
          deadlines.delete(id, timeoutMs);
          reject(abortError(signal!, subject));
        };
        const settle = () => {
          waiting.delete(id);
          deadlines.delete(id, timeoutMs);
          signal?.removeEventListener("abort", onAbort);
        };
        waiting.set(id, {
          resolve: (d) => (settle(), resolve(d)),
          reject: (e) => (settle(), reject(e)),
          subject,
          timeoutMs,
        });
        signal?.addEventListener("abort", onAbort, { once: true });
        deadlines.add(id, timeoutMs);
        const n = deliver(
          subject,
          data.slice(),
          (d) => waiting.get(id)?.resolve(d.slice()),
          headers,
        );
        if (n === 0) waiting.get(id)?.reject(new ServiceUnavailableError(`no actor is listening on ${subject}`, { details: { subject } }));
      });
    },
    publish(subject, data) {
      deliver(subject, data.slice());
    },
    subscribe(subject, handler, opts) {
      const s: LocalSub = { subject, queue: opts?.queue, handler, onError: opts?.onError };
      subs.add(s);
      return { unsubscribe: () => void subs.delete(s) };
    },
    flush: () => Promise.resolve(),
    newInbox: () => `_INBOX.local.${nextReply++}`,
  };
  return { transport, buckets: new Map() };
}

function localHeaders(h: Record<string, string>): InboundHeaders {
  const copy = new Map(Object.entries(h));
  return { get: (name) => copy.get(name) ?? "" };
}

/** A BusConnection over a LocalBus; closing it runs its hooks but leaves the bus to others. */
export function localConnection(bus: LocalBus): BusConnection {
  const hooks = new Set<() => Promise<void>>();
  let closing: Promise<void> | undefined;
  let closed = false;
  const guarded: Transport = {
    get maxPayload() {
      return bus.transport.maxPayload;
    },
    request: (s, d, t, o) => (closed ? Promise.reject(new ClosedError("connection is closed")) : bus.transport.request(s, d, t, o)),
    publish: (s, d) => bus.transport.publish(s, d),
    subscribe: (s, h, o) => bus.transport.subscribe(s, h, o),
    flush: () => bus.transport.flush(),
    newInbox: () => bus.transport.newInbox(),
  };
  return {
    backend: "local",
    nc: undefined,
    transport: guarded,
    codec: createCodec({ maxPayload: LOCAL_MAX_PAYLOAD }),
    serverVersion: "local",
    clustered: false,
    devServerUrl: undefined,
    onClose(hook) {
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
    close() {
      closing ??= (async () => {
        await Promise.allSettled([...hooks].map((h) => h()));
        hooks.clear();
        closed = true;
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
}
