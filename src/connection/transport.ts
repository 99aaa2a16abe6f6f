import { ActorBusError, CancelledError } from "../errors/index.ts";

/**
 * What actors and handles need from the message bus. NATS implements it for real; the "local"
 * backend implements it in memory, so both backends run the same registry and actor code.
 */
/** Header lookup as nats.js does it: "" for a header that is absent. */
export interface InboundHeaders {
  get(name: string): string;
}

export interface Inbound {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly reply?: string;
  /** Parsed on first access (nats.js); may throw on a malformed header block. */
  readonly headers?: InboundHeaders;
  /** The header block as text, when the message has it apart (a call of a batch). */
  readonly headerBlock?: string;
  respond(data: Uint8Array): boolean;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /**
   * Aborting rejects the request at once (with the signal's reason when it is an ActorBusError,
   * else CancelledError) and ignores its reply; telling the host is the caller's business.
   */
  signal?: AbortSignal;
  /**
   * Requests to the same subject made in the same turn of the event loop may leave as one
   * message (src/connection/batch.ts); only subscribers that unbatch (actor hosts) may be asked so.
   */
  coalesce?: boolean;
}

export interface Subscription {
  unsubscribe(): void;
  /**
   * Stops the subscription once what the server already sent it has been handled (NATS); a
   * backend without that unsubscribes. Absent: unsubscribe.
   */
  drain?(): Promise<void>;
}

export interface SubscribeOptions {
  queue?: string;
  /** Hears a handler that threw (a host's last chance to answer); without it the message is dropped. */
  onError?: (msg: Inbound, err: unknown) => void;
}

/**
 * Runs a handler where a throw must not escape: nats.js calls subscriptions from its socket
 * reader, and a throw there ends the reader and leaves the connection open but deaf; the local
 * bus calls them from microtasks, where a throw would end the process.
 */
export function deliverGuarded(handler: (msg: Inbound) => void, msg: Inbound, onError?: (msg: Inbound, err: unknown) => void): void {
  try {
    handler(msg);
  } catch (err) {
    try {
      onError?.(msg, err);
    } catch {
      // nowhere left to report it
    }
  }
}

export interface Transport {
  /** Largest message the server accepts; calls beyond it fail with CodecError before sending. */
  readonly maxPayload: number;
  /**
   * Sends a request and waits for one reply. Fails with ServiceUnavailableError when nobody
   * listens, CallTimeoutError at the deadline, ConnectionLostError if the connection drops.
   */
  request(subject: string, data: Uint8Array, timeoutMs: number, options?: RequestOptions): Promise<Uint8Array>;
  publish(subject: string, data: Uint8Array): void;
  subscribe(subject: string, handler: (msg: Inbound) => void, opts?: SubscribeOptions): Subscription;
  /** Resolves once the server has seen everything sent so far (subscriptions included). */
  flush(): Promise<void>;
  /** A fresh reply subject under this connection's inbox prefix (streams pull to one). */
  newInbox(): string;
}

const TD = new TextDecoder();
// Node's own decoder of a byte range: no view made, and cheaper than TextDecoder for short text.
const bufferUtf8Slice = typeof Buffer === "function" ? (Buffer.prototype as unknown as { utf8Slice?: (this: Uint8Array, start: number, end: number) => string }).utf8Slice : undefined;

/** UTF-8 text of bytes[start, end), malformed sequences replaced as TextDecoder does. */
export function utf8Slice(bytes: Uint8Array, start: number, end: number): string {
  return bufferUtf8Slice ? bufferUtf8Slice.call(bytes, start, end) : TD.decode(bytes.subarray(start, end));
}

/**
 * Header values ("" when absent), read straight from the message's header block, decoded once
 * for all the names asked: nats.js parses a whole block into a Map on first access, which costs
 * more than the call it carries. Messages of the local bus (and anything else) go through their
 * `headers`.
 */
export function headersOf<const N extends readonly string[]>(msg: Inbound, names: N): { [K in keyof N]: string } {
  let block = msg.headerBlock;
  if (block === undefined) {
    const raw = msg as unknown as { _msg?: { hdr?: number }; _rdata?: Uint8Array };
    const hdr = raw._msg?.hdr;
    if (raw._rdata === undefined || hdr === undefined) return names.map((n) => msg.headers?.get(n) ?? "") as { [K in keyof N]: string };
    block = hdr < 0 ? "" : utf8Slice(raw._rdata, 0, hdr);
  }
  return names.map((name) => headerIn(block, name)) as { [K in keyof N]: string };
}

/** One header's value in a header block ("" when absent); allocates nothing but the value. */
export function headerIn(block: string, name: string): string {
  // A header starts a line ("\r\n" before it) and ends at ":" (not a longer name's prefix).
  let at = block.indexOf(name);
  while (at >= 0 && !(at >= 2 && block.charCodeAt(at - 1) === 10 && block.charCodeAt(at - 2) === 13 && block.charCodeAt(at + name.length) === 58)) {
    at = block.indexOf(name, at + 1);
  }
  if (at < 0) return "";
  const start = at + name.length + 1;
  const end = block.indexOf("\r\n", start);
  return block.slice(start, end < 0 ? undefined : end).trim();
}

// A settled promise: its reactions run in this turn, like queueMicrotask's callbacks, without
// the async resource Node makes for each queueMicrotask.
const SETTLED = Promise.resolve();

/**
 * Writes what a nats.js connection holds to the socket now. nats.js writes one microtask after
 * the first message it is given, and everything queued before that microtask (the rest of the
 * socket reader's pass, promise continuations) runs first: for a lone call or a lone reply
 * that is latency, with nothing to gain. Returns a function that writes at once at most once
 * per turn: several lone messages made in one pass (a socket read that delivered several
 * calls) share nats.js's own write after the first. A no-op without a nats.js connection.
 */
export function writeNowOf(nc: unknown): () => void {
  const protocol = (nc as { protocol?: { flushPending?: () => void } } | undefined)?.protocol;
  if (typeof protocol?.flushPending !== "function") return () => {};
  let armed = true;
  const rearm = () => {
    armed = true;
  };
  return () => {
    if (!armed) return;
    armed = false;
    void SETTLED.then(rearm);
    try {
      protocol.flushPending!();
    } catch {
      // nats.js reports a failing socket through its own status; its next write tries again
    }
  };
}

/** The error a request rejects with when its signal aborts. */
export function abortError(signal: AbortSignal, subject: string): ActorBusError {
  const r: unknown = signal.reason;
  if (r instanceof ActorBusError) return r;
  return new CancelledError(`the call to ${subject} was cancelled by its caller`, { cause: r, details: { subject } });
}
