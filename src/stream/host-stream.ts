import type { Chunks } from "../chunks/index.ts";
import type { Codec } from "../codec/index.ts";
import type { Transport } from "../connection/index.ts";
import { CancelledError, CodecError } from "../errors/index.ts";
import type { Subjects } from "../subjects/index.ts";
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
  /**
   * Where items over the chunk threshold wait for the caller to pull them, until the call's
   * deadline (epoch ms). Without it every frame is one message, refused over max_payload.
   */
  large?: { chunks: Chunks; subjects: Subjects; deadline: number } | undefined;
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
  // Frames held in chunks, with the count of items sent up to and including each: freed when
  // the caller gives up, forgotten once it has consumed them (its credit says how many).
  const held: { id: string; upTo: number }[] = [];
  let itemsSent = 0;
  /** Items the caller has consumed: the credit it granted after its first pull. */
  let consumed = 0;
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

  // The caller will not pull what it was sent: free it now rather than at the deadline.
  const abandon = (last: Uint8Array | undefined) => {
    if (finished) return;
    for (const h of held.splice(0)) p.large!.chunks.drop(h.id);
    finish(last, true);
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

  /**
   * One frame of `items`; over the threshold it is held in chunks and the message is its ref. A
   * frame over maxValueBytes whose items might fit alone is sent in halves.
   */
  const sendItems = (items: unknown[]): void => {
    const large = p.large;
    let bytes: Uint8Array;
    try {
      if (!large) bytes = codec.encode([ITEM, ...items]);
      else {
        const out = large.chunks.encode([ITEM, ...items], large.subjects, large.deadline, 1);
        bytes = out.payload;
        if (out.id !== undefined) held.push({ id: out.id, upTo: itemsSent + items.length });
      }
    } catch (err) {
      if (large && items.length > 1 && err instanceof CodecError) {
        const mid = items.length >> 1;
        sendItems(items.slice(0, mid));
        if (!finished) sendItems(items.slice(mid));
        return;
      }
      return finish(encodeErr(codec, err), true);
    }
    itemsSent += items.length;
    send(bytes);
  };

  const batch: unknown[] = [];
  let flushSoon: ReturnType<typeof setImmediate> | undefined;
  const flush = () => {
    if (flushSoon) clearImmediate(flushSoon);
    flushSoon = undefined;
    if (batch.length === 0 || finished) return;
    sendItems(batch);
    batch.length = 0;
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
    idle = setTimeout(() => abandon(undefined), HOST_IDLE_MS);
    idle.unref?.();
  };
  armIdle();

  // Consumed items were pulled: their frames are gone from the store, or go at their deadline.
  const forgetConsumed = () => {
    let i = 0;
    while (i < held.length && held[i]!.upTo <= consumed) i++;
    if (i > 0) held.splice(0, i);
  };

  const heartbeat = setInterval(() => {
    if (inbox && Date.now() - lastSent >= HEARTBEAT_MS) send(codec.encode([HEARTBEAT]));
  }, HEARTBEAT_MS);
  heartbeat.unref?.();

  const onAbort = () => {
    const reason = p.signal.reason as Error | undefined;
    // A cancel from the caller needs no answer; a deadline does.
    abandon(reason instanceof CancelledError ? undefined : encodeErr(codec, reason));
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
      if (msg[0] === CANCEL) return abandon(undefined);
      if (msg[0] !== PULL) return;
      const n = msg[1];
      if (typeof n !== "number" || !Number.isInteger(n) || n <= 0 || n > 1_000_000) return;
      if (!inbox) {
        if (typeof msg[2] !== "string" || msg[2].length === 0 || msg[2].length > 256) return;
        inbox = msg[2];
      } else {
        consumed += n;
        if (held.length > 0) forgetConsumed();
      }
      credit += n;
      void pump();
    },
  };
}
