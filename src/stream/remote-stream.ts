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

  const settleWaiter = () => {
    if (!waiter) return;
    const w = waiter;
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

  const close = (error?: unknown, tellHost = false) => {
    if (ended) return;
    ended = error === undefined ? {} : { error };
    sub.unsubscribe();
    clearInterval(watchdog);
    p.signal?.removeEventListener("abort", onAbort);
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

  const sub: Subscription = transport.subscribe(inbox, (msg) => {
    if (ended) return;
    lastFrame = Date.now();
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
        return close();
      case ERROR:
        return close(errorFromWire(frame[1] as WireError));
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

  const onAbort = () => close(abortError(p.signal!, p.label), true);
  p.signal?.addEventListener("abort", onAbort, { once: true });

  // First pull: where to send, and how far ahead the host may run.
  transport.publish(opening.subject, codec.encode([PULL, window, inbox]));
  if (p.signal?.aborted) onAbort();

  const iterator: AsyncIterableIterator<unknown> = {
    next() {
      if (buffered.length > 0) {
        const value = buffered.shift();
        grant();
        return Promise.resolve({ value, done: false });
      }
      if (ended) return ended.error !== undefined ? Promise.reject(ended.error) : Promise.resolve({ value: undefined, done: true });
      if (waiter) return Promise.reject(new ActorBusError(`${p.label}: next() called again before the previous one settled`));
      return new Promise((resolve, reject) => (waiter = { resolve, reject }));
    },
    return(value?: unknown) {
      // break / return in for-await: the host's generator runs its finally now.
      if (!ended) close(undefined, true);
      buffered.length = 0;
      return Promise.resolve({ value, done: true });
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
