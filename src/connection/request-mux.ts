import type { NatsConnection, Msg, MsgHdrs } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import {
  CallTimeoutError,
  ClosedError,
  CodecError,
  ConnectionLostError,
  PermissionError,
  ServiceUnavailableError,
  type ActorBusError,
} from "../errors/index.ts";
import { replyInbox } from "../subjects/index.ts";
import { createDeadlines } from "./deadlines.ts";
import { abortError, type RequestOptions } from "./transport.ts";

interface Pending {
  resolve(data: Uint8Array): void;
  reject(err: Error): void;
  subject: string;
  timeoutMs: number;
  /** Set when the request has a signal: removed once the request settles. */
  signal?: AbortSignal;
  onAbort?: () => void;
}

const TE = new TextEncoder();

/**
 * The header block, built directly: nats.js only calls encode() on what it is given, and its
 * own MsgHdrs (a Map, key canonicalisation, validation) costs more per call than the rest of a
 * request. Callers put no CR/LF in keys or values (src/call/wire.ts guarantees it for calls).
 */
function toHeaders(h: Record<string, string>): MsgHdrs {
  let block = "NATS/1.0\r\n";
  for (const k in h) block += `${k}: ${h[k]}\r\n`;
  const bytes = TE.encode(`${block}\r\n`);
  return { encode: () => bytes } as unknown as MsgHdrs;
}

/** Settles a pending request: its signal listener goes with it. */
function release(p: Pending): void {
  if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
}

/**
 * Request/reply over one wildcard reply subscription per connection. Each request gets a
 * numeric id appended to the connection's reply prefix; replies are matched by parsing it back.
 * Compared with nats.js `request()` (a subscription entry and a timer per call), this removes
 * the per-call timer and mux bookkeeping, which is what limits request rates, not the wire.
 */
export interface RequestMux {
  request(subject: string, data: Uint8Array, timeoutMs: number, options?: RequestOptions): Promise<Uint8Array>;
  /** Fails every in-flight request (used when the connection drops or closes). */
  failAll(makeError: (subject: string) => ActorBusError): void;
  /** Fails the in-flight requests to one subject (the server refused to let us publish there). */
  failSubject(subject: string, err: ActorBusError): void;
  readonly inFlight: number;
  close(): void;
}

/** The reply prefix nats.js was configured with (`inboxPrefix`), "_INBOX" by default. */
export function inboxPrefixOf(nc: NatsConnection): string {
  return (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix || "_INBOX";
}

export function createRequestMux(nc: NatsConnection): RequestMux {
  const inbox = replyInbox(inboxPrefixOf(nc), nuid.next());
  const prefixLen = inbox.prefix.length;
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closed = false;
  const maxPayload = () => nc.info?.max_payload ?? 1024 * 1024;

  const deadlines = createDeadlines<number>((id) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    release(p);
    p.reject(new CallTimeoutError(`call to ${p.subject} timed out after ${p.timeoutMs} ms`, { details: { subject: p.subject, timeoutMs: p.timeoutMs } }));
  });

  const onReply = (err: Error | null, msg: Msg) => {
    if (err) {
      // A permissions violation on the inbox fails everything: no reply can ever arrive.
      const e = new PermissionError(`reply subscription failed: ${err.message}; connect with the inboxPrefix this user may subscribe to (e.g. inboxPrefix: "_INBOX_<namespace>", as in nats.conf), or allow subscribe on ${inbox.wildcard}`, { cause: err });
      for (const p of pending.values()) {
        release(p);
        p.reject(e);
      }
      pending.clear();
      return;
    }
    const id = Number(msg.subject.slice(prefixLen));
    const p = pending.get(id);
    if (!p) return; // late reply for a call that already timed out or was cancelled
    pending.delete(id);
    deadlines.delete(id, p.timeoutMs);
    release(p);
    let h: Msg["headers"];
    try {
      h = msg.headers;
    } catch {
      h = undefined; // unparsable headers: the payload still decides (this runs in nats.js's reader)
    }
    if (h && h.code >= 400) {
      if (h.code === 503) {
        p.reject(new ServiceUnavailableError(`no actor is listening on ${p.subject}`, { details: { subject: p.subject } }));
      } else {
        p.reject(new ServiceUnavailableError(`request to ${p.subject} failed: ${h.code} ${h.description}`, { details: { subject: p.subject, status: h.code } }));
      }
      return;
    }
    p.resolve(msg.data);
  };
  nc.subscribe(inbox.wildcard, { callback: onReply });

  return {
    request(subject, data, timeoutMs, options) {
      if (closed || nc.isClosed()) return Promise.reject(new ClosedError("connection is closed"));
      const signal = options?.signal;
      if (signal?.aborted) return Promise.reject(abortError(signal, subject));
      if (data.length > maxPayload()) {
        return Promise.reject(
          new CodecError(`request of ${data.length} bytes exceeds the server's max_payload of ${maxPayload()} bytes; send less per call or raise max_payload in nats.conf`, {
            details: { bytes: data.length, maxPayload: maxPayload() },
          }),
        );
      }
      const id = nextId++;
      return new Promise<Uint8Array>((resolve, reject) => {
        const p: Pending = { resolve, reject, subject, timeoutMs };
        if (signal) {
          p.signal = signal;
          p.onAbort = () => {
            if (pending.get(id) !== p) return;
            pending.delete(id);
            deadlines.delete(id, timeoutMs);
            reject(abortError(signal, subject));
          };
          signal.addEventListener("abort", p.onAbort, { once: true });
        }
        pending.set(id, p);
        deadlines.add(id, timeoutMs);
        try {
          nc.publish(subject, data, options?.headers ? { reply: inbox.prefix + id, headers: toHeaders(options.headers) } : { reply: inbox.prefix + id });
        } catch (err) {
          pending.delete(id);
          deadlines.delete(id, timeoutMs);
          release(p);
          reject(new ConnectionLostError(`cannot send to ${subject}: ${(err as Error).message}`, { cause: err }));
        }
      });
    },
    failAll(makeError) {
      const all = [...pending.entries()];
      pending.clear();
      for (const [id, p] of all) {
        deadlines.delete(id, p.timeoutMs);
        release(p);
        p.reject(makeError(p.subject));
      }
    },
    failSubject(subject, err) {
      for (const [id, p] of pending) {
        if (p.subject !== subject) continue;
        pending.delete(id);
        deadlines.delete(id, p.timeoutMs);
        release(p);
        p.reject(err);
      }
    },
    get inFlight() {
      return pending.size;
    },
    close() {
      closed = true;
      this.failAll((s) => new ClosedError(`connection closed while calling ${s}`));
      deadlines.close();
    },
  };
}
