import { createHash, timingSafeEqual } from "node:crypto";
import { abortError, type Transport } from "../connection/transport.ts";
import { ActorBusError, CallTimeoutError, CodecError, ConnectionLostError, ServiceUnavailableError } from "../errors/index.ts";
import type { ChunkRef } from "./ref.ts";
import { digestRequest, pullRequest, releaseRequest } from "./store.ts";

/** How long a pull waits for the sender's subscription to be known across a cluster. */
const INTEREST_WAIT_MS = 1_000;

export interface PullOptions {
  /** Epoch ms: the call's deadline, past which the pull fails with CallTimeoutError. */
  deadline: number;
  signal?: AbortSignal | undefined;
  window: number;
  pullTimeoutMs: number;
  maxValueBytes: number;
  /** What the receiver is assembling now, for stats (a partial value is forgotten on failure). */
  pulling: Set<Uint8Array>;
  /** Names the value in errors, e.g. "the result of svc.m". */
  what: string;
  /** Where a typed array's elements start in the value, read from its first chunk (Codec.typedArrayOffset). */
  dataOffset?: (head: Uint8Array) => number | undefined;
}

/**
 * Pulls the value `ref` names into one buffer: up to `window` chunk requests in flight (the
 * receiver's credit; the sender sends nothing unasked), each checked for its length, the whole
 * for its sha256 digest, hashed in order as chunks arrive (while the next ones are on the wire)
 * and compared with the sender's. The sender's is asked for right after the last chunk (it is
 * of the whole value it holds, whenever asked), so it arrives behind that chunk rather than a
 * round trip after it; it is compared once every chunk is in. Whatever happens, the sender is
 * told the receiver is done with it, and a partial buffer is dropped at once.
 */
export function pullChunks(transport: Transport, ref: ChunkRef, o: PullOptions): Promise<Uint8Array> {
  const { total, chunkSize } = ref;
  if (total > o.maxValueBytes) {
    return Promise.reject(new CodecError(`${o.what} is ${total} bytes, over this connection's maxValueBytes limit of ${o.maxValueBytes} bytes; raise maxValueBytes`, {
      details: { bytes: total, limit: o.maxValueBytes, option: "maxValueBytes" },
    }));
  }
  const n = Math.ceil(total / chunkSize);
  // Made when the first chunk arrives, placed so that a typed array the value starts with lands
  // on an 8-byte boundary: the decoder can then view it instead of copying it.
  let buf: Uint8Array | undefined;
  const place = (first: Uint8Array | undefined) => {
    const at = first && o.dataOffset ? o.dataOffset(first) : undefined;
    const pad = at === undefined ? 0 : (8 - (at % 8)) % 8;
    buf = new Uint8Array(new ArrayBuffer(total + pad), pad, total);
    o.pulling.add(buf);
  };
  return new Promise<Uint8Array>((resolve, reject) => {
    let next = 0;
    let inflight = 0;
    let received = 0;
    let over = false;
    const started = Date.now();
    const hash = createHash("sha256");
    const arrived = new Uint8Array(n);
    let hashed = 0;
    // One listener for the whole pull rather than one per chunk request: a cancel ends it at
    // once, and the answers still on their way are ignored.
    const onAbort = () => finish(abortError(o.signal!, ref.subject));
    const finish = (err: ActorBusError | undefined) => {
      if (over) return;
      over = true;
      o.signal?.removeEventListener("abort", onAbort);
      if (buf) o.pulling.delete(buf);
      try {
        transport.publish(ref.subject, releaseRequest(ref.id));
      } catch {
        // The connection is closing; the sender's deadline frees the value.
      }
      if (err) {
        buf = undefined;
        return reject(err);
      }
      resolve(buf!);
    };
    // The sender's digest, asked for early: settled here, used by check().
    let early: Promise<Uint8Array | undefined> | undefined;
    const askDigest = () => {
      const left = o.deadline - Date.now();
      if (left <= 0) return;
      // A failure here is not the pull's: check() asks again.
      early = transport.request(ref.subject, digestRequest(ref.id), Math.min(left, o.pullTimeoutMs)).then((d) => d, () => undefined);
    };
    const compare = (ours: Buffer, theirs: Uint8Array) => {
      if (theirs.length === 0) return finish(new CodecError(`${o.what} is no longer held by its sender (released, or past its deadline)`, { details: { bytes: total } }));
      if (theirs.length !== ours.length || !timingSafeEqual(ours, theirs)) {
        return finish(new CodecError(`${o.what} arrived corrupted: its sha256 digest does not match the sender's`, { details: { bytes: total } }));
      }
      finish(undefined);
    };
    // Every chunk is in: the sender's digest of what it holds against ours of what arrived.
    const check = () => {
      const left = o.deadline - Date.now();
      if (left <= 0) return finish(new CallTimeoutError(`pulling ${o.what} passed the call's deadline`, { details: { bytes: total, received } }));
      const ours = hash.digest();
      const again = () => {
        const left = o.deadline - Date.now();
        if (left <= 0) return finish(new CallTimeoutError(`pulling ${o.what} passed the call's deadline`, { details: { bytes: total, received } }));
        transport.request(ref.subject, digestRequest(ref.id), Math.min(left, o.pullTimeoutMs)).then(
          (theirs) => compare(ours, theirs),
          (err) => finish(failed(err)),
        );
      };
      if (!early) return again();
      early.then((theirs) => {
        if (over) return;
        if (theirs === undefined) again();
        else compare(ours, theirs);
      });
    };
    const failed = (err: unknown): ActorBusError => {
      if (err instanceof CallTimeoutError || err instanceof ServiceUnavailableError) {
        if (Date.now() >= o.deadline) return new CallTimeoutError(`pulling ${o.what} passed the call's deadline`, { cause: err, details: { bytes: total, received } });
        return new ConnectionLostError(`the process holding ${o.what} stopped answering after ${received} of ${n} chunks`, { cause: err, details: { bytes: total, received } });
      }
      return err instanceof ActorBusError ? err : new ConnectionLostError(`pulling ${o.what} failed: ${(err as Error)?.message ?? err}`, { cause: err });
    };
    const ask = (i: number) => {
      const left = o.deadline - Date.now();
      if (left <= 0) return finish(new CallTimeoutError(`pulling ${o.what} passed the call's deadline`, { details: { bytes: total, received } }));
      inflight++;
      transport.request(ref.subject, pullRequest(ref.id, i), Math.min(left, o.pullTimeoutMs)).then(
        (data) => {
          inflight--;
          if (over) return;
          const want = i === n - 1 ? total - i * chunkSize : chunkSize;
          if (data.length === 0) return finish(new CodecError(`${o.what} is no longer held by its sender (released, or past its deadline)`, { details: { bytes: total, received } }));
          if (data.length !== want) return finish(new CodecError(`${o.what} arrived truncated: chunk ${i} has ${data.length} bytes, expected ${want}`, { details: { bytes: total, chunk: i } }));
          if (!buf) place(i === 0 ? data : undefined);
          buf!.set(data, i * chunkSize);
          arrived[i] = 1;
          for (; hashed < n && arrived[hashed]; hashed++) hash.update(buf!.subarray(hashed * chunkSize, (hashed + 1) * chunkSize));
          if (++received === n) return check();
          pump();
        },
        (err) => {
          inflight--;
          if (over) return;
          // Before the first chunk, "no responders" may only mean that the sender's subscription
          // has not reached this receiver's server yet (a cluster): ask again for a moment.
          if (err instanceof ServiceUnavailableError && received === 0 && Date.now() - started < INTEREST_WAIT_MS) {
            setTimeout(() => over || ask(i), 20).unref();
            return;
          }
          finish(failed(err));
        },
      );
    };
    const pump = () => {
      while (!over && inflight < o.window && next < n) {
        ask(next++);
        if (next === n && !over) askDigest();
      }
    };
    if (o.signal?.aborted) return onAbort();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    if (n === 0) {
      place(undefined);
      return check();
    }
    pump();
  });
}
