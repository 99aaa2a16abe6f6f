import type { Codec } from "../codec/index.ts";
import type { Transport } from "../connection/index.ts";
import { CancelledError, CodecError } from "../errors/index.ts";
import { encodeErr } from "../reply/replies.ts";
import { CANCEL, END, HEARTBEAT, HEARTBEAT_MS, HOST_IDLE_MS, ITEM, PULL } from "./frames.ts";

// Items per message at most; a batch over max_payload is refused like one big item.
const MAX_BATCH = 32;

export interface HostStreamParams {
  transport: Transport;
  codec: Codec;
  iterable: AsyncIterable<unknown>;
  /** Where the caller pulls (its messages reach `onControl`). */
  subject: string;
  /** Fires when the call is cancelled or its deadline passes: the generator is returned. */
  signal: AbortSignal;
  /** Replies over this are replaced by a CodecError saying so. */
  maxPayload: number;
  /** Runs the generator's steps in the call's context (currentCall() inside the generator). */
  enter: <R>(fn: () => R) => R;
}

/** One stream being served: fed by the caller's pulls, it runs the generator within its credit. */
export interface HostStream {
  onControl(data: Uint8Array): void;
  /** Settles when the stream is over, however it ended: the call's slot is held until then. */
  readonly done: Promise<void>;
}

export function serveStream(p: HostStreamParams): HostStream {
  const { transport, codec } = p;
  const it = p.iterable[Symbol.asyncIterator]();
  let inbox: string | undefined;
  let credit = 0;
  let finished = false;
  let pumping = false;
  let lastSent = Date.now();
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const send = (bytes: Uint8Array) => {
    if (!inbox) return;
    if (bytes.length > p.maxPayload) {
      bytes = encodeErr(codec, new CodecError(`a stream item of ${bytes.length} bytes exceeds the server's max_payload of ${p.maxPayload} bytes; yield smaller items`));
      finish(bytes, true);
      return;
    }
    lastSent = Date.now();
    transport.publish(inbox, bytes);
  };

  const finish = (last: Uint8Array | undefined, returnGenerator: boolean) => {
    if (finished) return;
    finished = true;
    clearInterval(heartbeat);
    clearTimeout(idle);
    p.signal.removeEventListener("abort", onAbort);
    if (last && inbox) transport.publish(inbox, last);
    // return() runs the generator's finally blocks; a generator that is mid-next() gets it
    // after that next() settles (the language queues it).
    if (returnGenerator) void Promise.resolve(it.return?.()).catch(() => {});
    resolveDone();
  };

  const fail = (err: unknown) => {
    flush();
    finish(encodeErr(codec, err), false);
  };

  const batch: unknown[] = [];
  let flushSoon: ReturnType<typeof setImmediate> | undefined;
  const flush = () => {
    if (flushSoon) clearImmediate(flushSoon);
    flushSoon = undefined;
    if (batch.length === 0 || finished) return;
    let bytes: Uint8Array;
    try {
      bytes = codec.encode([ITEM, ...batch]);
    } catch (err) {
      batch.length = 0;
      return finish(encodeErr(codec, err), true);
    }
    batch.length = 0;
    send(bytes);
  };

  const pump = async () => {
    if (pumping || finished) return;
    pumping = true;
    try {
      while (credit > 0 && !finished) {
        let r: IteratorResult<unknown>;
        try {
          r = await p.enter(() => it.next());
        } catch (err) {
          return fail(err);
        }
        if (finished) return;
        if (r.done) {
          flush();
          return finish(codec.encode([END]), false);
        }
        credit--;
        batch.push(r.value);
        // Items a fast generator makes within one turn of the event loop travel together;
        // a slow one's items leave at once (the flush runs as soon as the loop turns).
        if (batch.length >= MAX_BATCH) flush();
        else flushSoon ??= setImmediate(flush);
      }
    } finally {
      pumping = false;
      if (!finished) armIdle();
    }
  };

  // A caller that stopped pulling (gone, or stuck) must not hold the generator forever.
  let idle: ReturnType<typeof setTimeout> | undefined;
  const armIdle = () => {
    clearTimeout(idle);
    if (credit > 0) return;
    idle = setTimeout(() => finish(undefined, true), HOST_IDLE_MS);
    idle.unref?.();
  };
  armIdle();

  const heartbeat = setInterval(() => {
    if (inbox && Date.now() - lastSent >= HEARTBEAT_MS) send(codec.encode([HEARTBEAT]));
  }, HEARTBEAT_MS);
  heartbeat.unref?.();

  const onAbort = () => {
    const reason = p.signal.reason as Error | undefined;
    // A cancel from the caller needs no answer; a deadline does.
    finish(reason instanceof CancelledError ? undefined : encodeErr(codec, reason), true);
  };
  p.signal.addEventListener("abort", onAbort, { once: true });
  if (p.signal.aborted) onAbort();

  return {
    done,
    onControl(data) {
      if (finished) return;
      let msg: unknown;
      try {
        msg = codec.decode(data);
      } catch {
        return; // not from a caller of ours: nothing to answer
      }
      if (!Array.isArray(msg)) return;
      if (msg[0] === CANCEL) return finish(undefined, true);
      if (msg[0] !== PULL) return;
      const n = msg[1];
      if (typeof n !== "number" || !Number.isInteger(n) || n <= 0 || n > 1_000_000) return;
      if (!inbox) {
        if (typeof msg[2] !== "string" || msg[2].length === 0 || msg[2].length > 256) return;
        inbox = msg[2];
      }
      credit += n;
      void pump();
    },
  };
}
