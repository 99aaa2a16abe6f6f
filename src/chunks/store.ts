import { createHash, type Hash } from "node:crypto";
import { decode, encode } from "@msgpack/msgpack";
import { nuid } from "@nats-io/transport-node";
import { MAX_TIMER_MS } from "../connection/deadlines.ts";
import type { Inbound, Subscription, Transport } from "../connection/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { encodeRef } from "./ref.ts";

/**
 * The large values one connection has sent and not yet seen consumed: encoded once, held as
 * bytes, served chunk by chunk to whoever pulls on the connection's chunk subject. A value goes
 * when its consumers have released it, when its owner drops it (the call it belongs to settled)
 * or at its deadline, whichever comes first, so a receiver that crashed mid-pull leaves nothing.
 */
export interface ChunkStore {
  /** Holds `bytes` until released `consumers` times, dropped, or `deadline` (epoch ms). Returns the ref to send. */
  put(bytes: Uint8Array, subjects: Subjects, chunkSize: number, deadline: number, consumers: number): { id: string; ref: Uint8Array };
  drop(id: string): void;
  readonly held: number;
  readonly heldBytes: number;
  /** Values stored since the connection opened (fanout stores its arguments once for all replicas). */
  readonly stored: number;
  close(): void;
}

interface Entry {
  bytes: Uint8Array;
  chunkSize: number;
  releasesLeft: number;
  timer: NodeJS.Timeout;
  /** sha256 of the chunks before `hashed`, fed in order as they are first served. */
  hash: Hash;
  hashed: number;
  digest: Uint8Array | undefined;
}

/** Hashes the chunks of `e` up to `upTo` (exclusive) that are not hashed yet. */
function hashUpTo(e: Entry, upTo: number): void {
  const n = Math.ceil(e.bytes.length / e.chunkSize);
  for (; e.hashed < Math.min(upTo, n); e.hashed++) e.hash.update(e.bytes.subarray(e.hashed * e.chunkSize, (e.hashed + 1) * e.chunkSize));
}

function digestOf(e: Entry): Uint8Array {
  if (!e.digest) {
    hashUpTo(e, Infinity);
    e.digest = e.hash.digest();
  }
  return e.digest;
}

/** How long past its deadline a value stays: a pull started just in time may finish. */
const GRACE_MS = 1_000;

/** Values smaller than this are assembled in fresh memory, larger ones in a buffer the pool keeps. */
const POOLED_MIN_BYTES = 4 * 1024 * 1024;
/** Most bytes of dropped values' buffers kept for reuse, and for how long unused. */
const POOL_MOST_BYTES = 256 * 1024 * 1024;
const POOL_IDLE_MS = 5_000;

/**
 * The buffers of dropped values, kept a few seconds for the next large value to be assembled
 * in: copying into memory the process has touched already costs a fraction of a fresh buffer's
 * page faults (a 64 MB value: ~8 ms against ~40 ms), and a process that sends large values sends
 * them again and again (weights, batches). A value whose bytes may still be read (it is held,
 * or was sent inline) is never in it. Should a chunk be sent late from a reused buffer (nats.js
 * holds what it publishes while disconnected), the receiver's digest check refuses it.
 */
export interface BufferPool {
  alloc(size: number): Uint8Array;
  /** The bytes of a dropped value: kept if the pool made them. */
  give(bytes: Uint8Array): void;
  clear(): void;
}

export function createBufferPool(): BufferPool {
  const made = new WeakSet<ArrayBufferLike>();
  let free: ArrayBuffer[] = [];
  let freeBytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const clear = () => {
    free = [];
    freeBytes = 0;
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  return {
    alloc(size) {
      if (size < POOLED_MIN_BYTES) return new Uint8Array(size);
      // The smallest that fits, if it is not over twice the size (it is held as long as the value).
      let best = -1;
      for (let i = 0; i < free.length; i++) {
        const n = free[i]!.byteLength;
        if (n >= size && n <= 2 * size && (best < 0 || n < free[best]!.byteLength)) best = i;
      }
      if (best >= 0) {
        const buf = free.splice(best, 1)[0]!;
        freeBytes -= buf.byteLength;
        return new Uint8Array(buf, 0, size);
      }
      const buf = new ArrayBuffer(size);
      made.add(buf);
      return new Uint8Array(buf);
    },
    give(bytes) {
      const buf = bytes.buffer;
      if (!made.has(buf) || !(buf instanceof ArrayBuffer) || free.includes(buf)) return;
      free.push(buf);
      freeBytes += buf.byteLength;
      while (freeBytes > POOL_MOST_BYTES) freeBytes -= free.shift()!.byteLength;
      if (timer) timer.refresh();
      else {
        timer = setTimeout(clear, POOL_IDLE_MS);
        timer.unref();
      }
    },
    clear,
  };
}

export function createChunkStore(transport: Transport, pool?: BufferPool): ChunkStore {
  const connectionId = nuid.next();
  const entries = new Map<string, Entry>();
  // One subscription per namespace the connection sends large values in, made on first use.
  const subs = new Map<string, Subscription>();
  let nextId = 0;
  let heldBytes = 0;
  let stored = 0;
  const empty = new Uint8Array(0);

  const drop = (id: string) => {
    const e = entries.get(id);
    if (!e) return;
    entries.delete(id);
    clearTimeout(e.timer);
    heldBytes -= e.bytes.length;
    pool?.give(e.bytes);
  };

  // [id, index]: a chunk, answered with its bytes (empty: no such value any more); index -1: the
  // value's sha256. [id]: a release.
  const onPull = (msg: Inbound) => {
    let req: unknown;
    try {
      req = decode(msg.data);
    } catch {
      return;
    }
    if (!Array.isArray(req) || typeof req[0] !== "string") return;
    const e = entries.get(req[0]);
    if (req.length === 1) {
      if (e && --e.releasesLeft <= 0) drop(req[0]);
      return;
    }
    if (!msg.reply) return;
    const i = req[1];
    const start = typeof i === "number" && Number.isInteger(i) && i >= 0 && e ? i * e.chunkSize : -1;
    try {
      if (i === -1 && e) msg.respond(digestOf(e));
      else if (start >= 0 && start < e!.bytes.length) {
        msg.respond(e!.bytes.subarray(start, start + e!.chunkSize));
        // After the answer has left: the hash is needed only at the end of the pull.
        hashUpTo(e!, i + 1);
      } else msg.respond(empty);
    } catch {
      // The connection is closing: the receiver times out and says so.
    }
  };

  return {
    put(bytes, subjects, chunkSize, deadline, consumers) {
      const subject = subjects.chunks(connectionId);
      if (!subs.has(subject)) subs.set(subject, transport.subscribe(subject, onPull));
      const id = (nextId++).toString(36);
      const ttl = Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now()) + GRACE_MS);
      const timer = setTimeout(() => drop(id), ttl);
      timer.unref();
      entries.set(id, { bytes, chunkSize, releasesLeft: consumers, timer, hash: createHash("sha256"), hashed: 0, digest: undefined });
      heldBytes += bytes.length;
      stored++;
      return { id, ref: encodeRef({ subject, id, total: bytes.length, chunkSize }) };
    },
    drop,
    get held() {
      return entries.size;
    },
    get heldBytes() {
      return heldBytes;
    },
    get stored() {
      return stored;
    },
    close() {
      for (const id of [...entries.keys()]) drop(id);
      for (const s of subs.values()) s.unsubscribe();
      subs.clear();
      pool?.clear();
    },
  };
}

/** A chunk request or release, as onPull reads it. */
export const pullRequest = (id: string, index: number): Uint8Array => encode([id, index]);
export const digestRequest = (id: string): Uint8Array => encode([id, -1]);
export const releaseRequest = (id: string): Uint8Array => encode([id]);
