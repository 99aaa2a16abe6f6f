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
import { batchEntrySize, batchHeaderBlock, COMBINED_TOKEN, encodeBatch, forEachReply, MAX_TOKEN, type BatchEntry } from "./batch.ts";
import { createDeadlines } from "./deadlines.ts";
import { abortError, writeNowOf, type RequestOptions } from "./transport.ts";

interface Pending {
  resolve(data: Uint8Array): void;
  reject(err: Error): void;
  subject: string;
  timeoutMs: number;
  /** Set when the request has a signal: removed once the request settles. */
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** A coalescing request waiting for the end of this turn to leave with others to its subject. */
interface Queued extends BatchEntry {
  p: Pending;
}

/** Most calls one batch message carries; hosts refuse more. */
export const MAX_BATCH_CALLS = 1024;

const TE = new TextEncoder();
const TURN_END = Promise.resolve();

/**
 * The header block, built directly: nats.js only calls encode() on what it is given, and its
 * own MsgHdrs (a Map, key canonicalisation, validation) costs more per call than the rest of a
 * request. Callers put no CR/LF in keys or values (src/call/wire.ts guarantees it for calls).
 */
function headerBlock(h: Record<string, string>): string {
  let block = "NATS/1.0\r\n";
  for (const k in h) block += `${k}: ${h[k]}\r\n`;
  return `${block}\r\n`;
}

/** A call of a batch without headers of its own. */
const NO_HEADERS = "NATS/1.0\r\n\r\n";

/** A header block nats.js publishes as given (a class: no closure made per call). */
class EncodedHeaders {
  constructor(private readonly bytes: Uint8Array) {}
  encode(): Uint8Array {
    return this.bytes;
  }
}

function asHeaders(bytes: Uint8Array): MsgHdrs {
  return new EncodedHeaders(bytes) as unknown as MsgHdrs;
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

export function createRequestMux(nc: NatsConnection, o: { coalesce: boolean } = { coalesce: true }): RequestMux {
  const inbox = replyInbox(inboxPrefixOf(nc), nuid.next());
  const prefixLen = inbox.prefix.length;
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closed = false;
  const maxPayload = () => nc.info?.max_payload ?? 1024 * 1024;
  // Coalescing requests of this turn, by subject; sent by one microtask queued with the first.
  const queued = new Map<string, Queued[]>();
  let flushQueued = false;
  // The calls of each batch in flight, by the token of its first call (the batch's reply
  // subject): a "no responders" status for the batch fails them all.
  const batches = new Map<number, Queued[]>();
  // A call with nothing else in flight is written at once: waiting for nats.js's write (one
  // microtask on) gains nothing when no other call can join it.
  const writeNow = writeNowOf(nc);

  const deadlines = createDeadlines<number>((id) => {
    batches.delete(id);
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
      batches.clear();
      return;
    }
    const id = Number(msg.subject.slice(prefixLen));
    if (id === COMBINED_TOKEN) {
      forEachReply(msg.data, (token, bytes) => take(token)?.resolve(bytes));
      return;
    }
    const batch = batches.get(id);
    if (batch) batches.delete(id);
    const p = take(id);
    if (!p) return; // late reply for a call that already timed out or was cancelled
    let h: Msg["headers"];
    try {
      h = msg.headers;
    } catch {
      h = undefined; // unparsable headers: the payload still decides (this runs in nats.js's reader)
    }
    if (h && h.code >= 400) {
      const fail = (q: Pending) =>
        h.code === 503
          ? q.reject(new ServiceUnavailableError(`no actor is listening on ${q.subject}`, { details: { subject: q.subject } }))
          : q.reject(new ServiceUnavailableError(`request to ${q.subject} failed: ${h.code} ${h.description}`, { details: { subject: q.subject, status: h.code } }));
      fail(p);
      // The status answers the batch message, so every call it carried.
      if (batch) for (let i = 1; i < batch.length; i++) if (pending.get(batch[i]!.token) === batch[i]!.p) fail(take(batch[i]!.token)!);
      return;
    }
    p.resolve(msg.data);
  };

  /** Removes a pending request (its timer and signal listener with it) and returns it. */
  const take = (id: number): Pending | undefined => {
    // A batch's first call settled: no status can follow for its batch, and its deadline goes
    // here, so nothing else would ever forget the batch (and its calls).
    batches.delete(id);
    const p = pending.get(id);
    if (!p) return undefined;
    pending.delete(id);
    deadlines.delete(id, p.timeoutMs);
    release(p);
    return p;
  };

  const sendFailed = (q: Queued, subject: string, err: unknown) => {
    if (take(q.token) !== q.p) return;
    q.p.reject(new ConnectionLostError(`cannot send to ${subject}: ${(err as Error).message}`, { cause: err }));
  };

  const publishOne = (subject: string, q: Queued) => {
    try {
      const reply = inbox.prefix + q.token;
      nc.publish(subject, q.data, q.headerBlock === NO_HEADERS ? { reply } : { reply, headers: asHeaders(TE.encode(q.headerBlock)) });
    } catch (err) {
      sendFailed(q, subject, err);
    }
  };

  const publishBatch = (subject: string, calls: Queued[]) => {
    if (calls.length === 1) return publishOne(subject, calls[0]!);
    batches.set(calls[0]!.token, calls);
    try {
      nc.publish(subject, encodeBatch(calls), { reply: inbox.prefix + calls[0]!.token, headers: asHeaders(batchHeaderBlock(calls.length)) });
    } catch (err) {
      batches.delete(calls[0]!.token);
      for (const q of calls) sendFailed(q, subject, err);
    }
  };

  /** Sends this turn's coalescing requests: per subject, batches within max_payload. */
  const sendQueued = () => {
    flushQueued = false;
    const limit = maxPayload() - 64; // the batch header block rides in the same message
    for (const [subject, list] of queued) {
      if (list.length === 1) {
        const q = list[0]!;
        if (pending.get(q.token) === q.p) publishOne(subject, q);
        continue;
      }
      let batch: Queued[] = [];
      let size = 0;
      for (const q of list) {
        if (pending.get(q.token) !== q.p) continue; // cancelled or failed before it left
        q.headerBytes = Buffer.byteLength(q.headerBlock);
        const s = batchEntrySize(q);
        if (batch.length > 0 && (size + s > limit || batch.length === MAX_BATCH_CALLS)) {
          publishBatch(subject, batch);
          batch = [];
          size = 0;
        }
        batch.push(q);
        size += s;
      }
      if (batch.length > 0) publishBatch(subject, batch);
    }
    queued.clear();
    if (pending.size === 1) writeNow();
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
      const id = nextId;
      // Tokens travel as u32 in batches; after 4 billion calls the oldest are long settled.
      nextId = nextId === MAX_TOKEN ? 1 : nextId + 1;
      return new Promise<Uint8Array>((resolve, reject) => {
        const p: Pending = { resolve, reject, subject, timeoutMs };
        if (signal) {
          p.signal = signal;
          p.onAbort = () => {
            if (pending.get(id) !== p) return;
            pending.delete(id);
            // A batch's first call keeps its timer: it forgets the batch if no reply ever comes.
            if (!batches.has(id)) deadlines.delete(id, timeoutMs);
            reject(abortError(signal, subject));
          };
          signal.addEventListener("abort", p.onAbort, { once: true });
        }
        pending.set(id, p);
        deadlines.add(id, timeoutMs);
        if (options?.coalesce && o.coalesce) {
          const block = options.headers ? headerBlock(options.headers) : NO_HEADERS;
          // Its size in bytes is only needed if it leaves in a batch (sendQueued).
          const q: Queued = { token: id, p, headerBlock: block, headerBytes: 0, data };
          const list = queued.get(subject);
          if (list) list.push(q);
          else queued.set(subject, [q]);
          if (!flushQueued) {
            flushQueued = true;
            // A reaction of a settled promise: the same turn as queueMicrotask, without the
            // async resource Node makes for each queueMicrotask.
            void TURN_END.then(sendQueued);
          }
          return;
        }
        try {
          nc.publish(subject, data, options?.headers ? { reply: inbox.prefix + id, headers: asHeaders(TE.encode(headerBlock(options.headers))) } : { reply: inbox.prefix + id });
          if (pending.size === 1) writeNow();
        } catch (err) {
          pending.delete(id);
          deadlines.delete(id, timeoutMs);
          release(p);
          reject(new ConnectionLostError(`cannot send to ${subject}: ${(err as Error).message}`, { cause: err }));
        }
      });
    },
    failAll(makeError) {
      for (const id of [...pending.keys()]) {
        const p = take(id)!;
        p.reject(makeError(p.subject));
      }
      batches.clear();
    },
    failSubject(subject, err) {
      for (const [id, p] of pending) if (p.subject === subject) take(id)!.reject(err);
    },
    get inFlight() {
      return pending.size;
    },
    close() {
      closed = true;
      queued.clear();
      batches.clear();
      this.failAll((s) => new ClosedError(`connection closed while calling ${s}`));
      deadlines.close();
    },
  };
}
