import { chunksOfTransport, isChunkRef, releaseRef, type Chunks } from "../chunks/index.ts";
import type { Codec } from "../codec/index.ts";
import { abortError, type Subscription, type Transport } from "../connection/index.ts";
import { ActorBusError, CallTimeoutError, CodecError, ReplicaCrashedError, errorFromWire, type WireError } from "../errors/index.ts";
import { CANCEL, END, ERROR, HEARTBEAT, HEARTBEAT_MS, ITEM, MISSED_HEARTBEATS, PULL, type StreamOpening } from "./frames.ts";

export interface RemoteStreamParams {
  transport: Transport;
  codec: Codec;
  opening: StreamOpening;
  /** What the stream is, for messages: "svc.generate". */
  label: string;
  signal: AbortSignal | undefined;
  /** Longest wait for one item; the deadline of the call bounds the whole stream. */
  idleTimeoutMs: number | undefined;
}

type Waiter = { resolve(r: IteratorResult<unknown>): void; reject(e: unknown): void };

/** A frame the host held in chunks, in its place among the items: pulled, then its items take it. */
class Large {
  items: unknown[] | undefined;
  pulling = false;
  constructor(readonly ref: Uint8Array) {}
}

/**
 * The caller's end of a stream: an async iterator that pulls with credit. `break`/`return()`
 * cancels the host's generator; the call's deadline and signal apply to the whole stream; a
 * host that stops sending (no item, end or heartbeat) ends it with ReplicaCrashedError.
 */
export function openRemoteStream(p: RemoteStreamParams): AsyncIterableIterator<unknown> {
  const { transport, codec, opening } = p;
  const window = opening.window;
  const buffered: unknown[] = [];
  let waiter: Waiter | undefined;
  let ended: { error?: unknown } | undefined;
  let consumedSinceCredit = 0;
  let lastFrame = Date.now();
  let lastItem = Date.now();
  const deadline = Date.now() + opening.remainingMs;
  const inbox = transport.newInbox();
  // Frames in chunks among `buffered`, not yet replaced by their items. One is pulled at a time,
  // and one pulled frame at most waits ahead of the consumer: credit counts items, not bytes.
  let larges = 0;
  let chunks: Chunks | undefined;
  let stopPull: AbortController | undefined;

  /** The head frame's items, once pulled, take its place; undefined while it is on its way. */
  const head = (): boolean => {
    const h = buffered[0];
    if (!(h instanceof Large)) return true;
    if (!h.items) return false;
    buffered.splice(0, 1, ...h.items);
    if (--larges === 0 && ended) p.signal?.removeEventListener("abort", onAbort);
    pullNext();
    return buffered.length > 0 && head();
  };

  const pullNext = () => {
    if (stopPull || larges === 0) return;
    let next: Large | undefined;
    for (const b of buffered) {
      if (!(b instanceof Large)) continue;
      if (b.items) return; // one pulled ahead is enough
      next = b;
      break;
    }
    if (!next) return;
    const l = next;
    l.pulling = true;
    const stop = (stopPull = new AbortController());
    chunks ??= chunksOfTransport(transport, codec);
    chunks.resolve(l.ref, deadline, stop.signal, `an item of the stream of ${p.label}`).then(
      (bytes) => {
        if (stopPull === stop) stopPull = undefined;
        if (stop.signal.aborted) return;
        let frame: unknown;
        try {
          frame = codec.decode(bytes);
        } catch (err) {
          return fail(err instanceof ActorBusError ? err : new CodecError(`malformed stream frame from ${p.label}`));
        }
        if (!Array.isArray(frame) || frame[0] !== ITEM) return fail(new CodecError(`malformed stream frame from ${p.label}: its chunks hold no items`));
        l.items = frame.slice(1);
        settleWaiter();
        pullNext();
      },
      (err) => {
        if (stopPull === stop) stopPull = undefined;
        if (!stop.signal.aborted) fail(err);
      },
    );
  };

  /**
   * Gives up every frame from the first one in chunks not yet pulled on: its pull stops, and the
   * holder of each later one is told it will not be pulled.
   */
  const dropLarges = () => {
    stopPull?.abort();
    stopPull = undefined;
    if (larges === 0) return;
    const at = buffered.findIndex((b) => b instanceof Large && !b.items);
    if (at < 0) return;
    for (const b of buffered.splice(at)) if (b instanceof Large && !b.pulling) releaseRef(transport, b.ref);
    larges = buffered.reduce<number>((n, b) => n + (b instanceof Large ? 1 : 0), 0);
  };

  /** A large item could not be had: the items after it cannot be delivered out of order. */
  const fail = (err: unknown) => {
    dropLarges();
    if (!ended) return close(err, true);
    // The host had ended: the consumer must not see a clean end with items missing.
    if (ended.error === undefined) ended = { error: err };
    p.signal?.removeEventListener("abort", onAbort);
    settleWaiter();
  };

  const settleWaiter = () => {
    if (!waiter) return;
    const w = waiter;
    if (buffered.length > 0 && !head()) return;
    if (buffered.length > 0) {
      waiter = undefined;
      w.resolve({ value: buffered.shift(), done: false });
      grant();
    } else if (ended) {
      waiter = undefined;
      if (ended.error !== undefined) w.reject(ended.error);
      else w.resolve({ value: undefined, done: true });
    }
  };

  /** `keep`: frames in chunks are still pulled (the host ended or failed after sending them). */
  const close = (error?: unknown, tellHost = false, keep = false) => {
    if (ended) return;
    ended = error === undefined ? {} : { error };
    if (!keep) dropLarges();
    if (tellHost) {
      // Frames the host sent before it heard us may still be on their way, and a host that had
      // finished meanwhile will not free those it holds in chunks: release them as they come,
      // until its last frame or a heartbeat's time.
      linger = setTimeout(() => {
        try {
          sub.unsubscribe();
        } catch {
          // The connection closed meanwhile: nothing is listening any more.
        }
      }, HEARTBEAT_MS);
      linger.unref?.();
    } else sub.unsubscribe();
    clearInterval(watchdog);
    // Frames still to pull after the end stay cancellable until they are in.
    if (larges === 0) p.signal?.removeEventListener("abort", onAbort);
    if (tellHost) transport.publish(opening.subject, codec.encode([CANCEL]));
    settleWaiter();
  };

  const grant = () => {
    consumedSinceCredit++;
    // Refill in halves: one small message per half window, not one per item.
    if (!ended && consumedSinceCredit >= window / 2) {
      transport.publish(opening.subject, codec.encode([PULL, consumedSinceCredit]));
      consumedSinceCredit = 0;
    }
  };

  let linger: ReturnType<typeof setTimeout> | undefined;
  const late = (data: Uint8Array) => {
    if (isChunkRef(data)) return releaseRef(transport, data);
    let frame: unknown;
    try {
      frame = codec.decode(data);
    } catch {
      return;
    }
    if (Array.isArray(frame) && (frame[0] === END || frame[0] === ERROR)) {
      clearTimeout(linger);
      sub.unsubscribe();
    }
  };

  const sub: Subscription = transport.subscribe(inbox, (msg) => {
    if (ended) return linger ? late(msg.data) : undefined;
    lastFrame = Date.now();
    if (isChunkRef(msg.data)) {
      lastItem = lastFrame;
      buffered.push(new Large(msg.data));
      larges++;
      pullNext();
      return settleWaiter();
    }
    let frame: unknown[];
    try {
      frame = codec.decode<unknown[]>(msg.data);
    } catch (err) {
      return close(err instanceof ActorBusError ? err : new CodecError(`malformed stream frame from ${p.label}`), true);
    }
    if (!Array.isArray(frame)) return close(new CodecError(`malformed stream frame from ${p.label}`), true);
    switch (frame[0]) {
      case ITEM:
        lastItem = lastFrame;
        for (let i = 1; i < frame.length; i++) buffered.push(frame[i]);
        return settleWaiter();
      case END:
        return close(undefined, false, true);
      case ERROR:
        return close(errorFromWire(frame[1] as WireError), false, true);
      case HEARTBEAT:
        return;
      default:
        return close(new CodecError(`unknown stream frame ${String(frame[0])} from ${p.label}`), true);
    }
  });

  // One timer per stream: the deadline, the idle limit, and the host's heartbeats.
  const watchdog = setInterval(() => {
    const now = Date.now();
    if (now >= deadline) return close(new CallTimeoutError(`the stream of ${p.label} passed its deadline`, { details: { stream: p.label } }), true);
    if (p.idleTimeoutMs !== undefined && buffered.length === 0 && now - lastItem >= p.idleTimeoutMs) {
      return close(new CallTimeoutError(`no item from ${p.label} for ${p.idleTimeoutMs} ms (idleTimeoutMs)`, { details: { stream: p.label } }), true);
    }
    if (now - lastFrame >= MISSED_HEARTBEATS * HEARTBEAT_MS) {
      close(new ReplicaCrashedError(`the host of ${p.label} stopped sending mid-stream (no item or heartbeat for ${now - lastFrame} ms): it died or was cut off`, { details: { stream: p.label } }));
    }
  }, Math.min(250, Math.max(20, Math.floor((p.idleTimeoutMs ?? HEARTBEAT_MS) / 4))));
  watchdog.unref?.();

  const onAbort = () => (ended ? fail(abortError(p.signal!, p.label)) : close(abortError(p.signal!, p.label), true));
  p.signal?.addEventListener("abort", onAbort, { once: true });

  // First pull: where to send, and how far ahead the host may run.
  transport.publish(opening.subject, codec.encode([PULL, window, inbox]));
  if (p.signal?.aborted) onAbort();

  const iterator: AsyncIterableIterator<unknown> = {
    next() {
      if (buffered.length > 0 && (larges === 0 || head())) {
        const value = buffered.shift();
        grant();
        return Promise.resolve({ value, done: false });
      }
      if (ended && buffered.length === 0) return ended.error !== undefined ? Promise.reject(ended.error) : Promise.resolve({ value: undefined, done: true });
      if (waiter) return Promise.reject(new ActorBusError(`${p.label}: next() called again before the previous one settled`));
      return new Promise((resolve, reject) => (waiter = { resolve, reject }));
    },
    return(value?: unknown) {
      // break / return in for-await: the host's generator runs its finally now.
      if (!ended) close(undefined, true);
      dropLarges();
      p.signal?.removeEventListener("abort", onAbort);
      buffered.length = 0;
      larges = 0;
      return Promise.resolve({ value, done: true });
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
