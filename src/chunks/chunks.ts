import type { BusConnection, Transport } from "../connection/index.ts";
import type { Codec, EncodeLimit } from "../codec/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { DEFAULT_CHUNK_SETTINGS, HEADROOM, MAX_CHUNK, type ChunkSettings } from "./options.ts";
import { pullChunks } from "./pull.ts";
import { decodeRef, isChunkRef } from "./ref.ts";
import { createBufferPool, createChunkStore, releaseRequest, type ChunkStore } from "./store.ts";

/** A value ready to send: inline bytes, or a ref to what the store now holds under `id`. */
export interface Outgoing {
  payload: Uint8Array;
  /** Set when the value was stored: drop it once the call it belongs to has settled. */
  id: string | undefined;
}

export interface ChunkStats {
  /** Values this connection holds for receivers to pull. */
  held: number;
  heldBytes: number;
  /** Values stored since the connection opened. */
  stored: number;
  /** Values this connection is pulling now (partial ones included). */
  pulling: number;
  pullingBytes: number;
}

/** The large-value side of one connection: what it holds for others and what it is pulling. */
export interface Chunks {
  readonly settings: Readonly<ChunkSettings>;
  /**
   * Encodes `value` (up to maxValueBytes); over the threshold it is stored until `deadline` or
   * `consumers` releases, and the payload is its ref. Small values: plain bytes, nothing stored.
   */
  encode(value: unknown, subjects: Subjects, deadline: number, consumers: number): Outgoing;
  /** Bytes as sent: a ref is pulled (within `deadline`), anything else returned as is. */
  resolve(bytes: Uint8Array, deadline: number, signal: AbortSignal | undefined, what: string): Promise<Uint8Array>;
  drop(id: string | undefined): void;
  stats(): ChunkStats;
}

// Hung off the connection it serves, not on it: a BusConnection stays a plain interface.
const byConnection = new WeakMap<BusConnection, Chunks>();

// Code handed only a transport (a stream's caller end) finds the chunk side of its connection here.
const byTransport = new WeakMap<Transport, Chunks>();

/** The connection's chunk side, made on first use with the defaults unless configured. */
export function chunksOf(conn: BusConnection): Chunks {
  let c = byConnection.get(conn);
  if (!c) {
    byConnection.set(conn, (c = createChunks(conn, DEFAULT_CHUNK_SETTINGS)));
    if (!byTransport.has(conn.transport)) byTransport.set(conn.transport, c);
  }
  return c;
}

/**
 * The chunk side of the connection `transport` belongs to, for pulling values. A transport whose
 * connection never made one (none of actorbus' own) gets one with the defaults that only pulls:
 * it has no connection to close a store with.
 */
export function chunksOfTransport(transport: Transport, codec: Codec): Chunks {
  let c = byTransport.get(transport);
  if (!c) {
    const receiver = { transport, codec, onClose: () => () => {} } as unknown as BusConnection;
    byTransport.set(transport, (c = createChunks(receiver, DEFAULT_CHUNK_SETTINGS)));
  }
  return c;
}

/**
 * Tells the holder of the value `ref` names that this receiver will not pull it (a stream
 * item its consumer stopped before): it need not wait for its deadline to free it.
 */
export function releaseRef(transport: Transport, ref: Uint8Array): void {
  try {
    const { subject, id } = decodeRef(ref);
    transport.publish(subject, releaseRequest(id));
  } catch {
    // A malformed ref names nothing to free; a closing connection frees nothing either way.
  }
}

/** Sets a connection's limits (connectBus, getServices); values not given keep their defaults. */
export function configureChunks(conn: BusConnection, given: { chunkThresholdBytes?: number | undefined; maxValueBytes?: number | undefined }): void {
  const s = chunksOf(conn).settings as ChunkSettings;
  if (given.chunkThresholdBytes !== undefined) s.thresholdBytes = given.chunkThresholdBytes;
  if (given.maxValueBytes !== undefined) s.maxValueBytes = given.maxValueBytes;
}

export { isChunkRef };

function createChunks(conn: BusConnection, defaults: Readonly<ChunkSettings>): Chunks {
  const { transport, codec } = conn;
  const settings: ChunkSettings = { ...defaults };
  let store: ChunkStore | undefined;
  // Large values are assembled in the buffers of values the store has dropped (store.ts).
  const pool = createBufferPool();
  const alloc = (size: number) => pool.alloc(size);
  const pulling = new Set<Uint8Array>();
  const limit: EncodeLimit = { bytes: settings.maxValueBytes, name: "maxValueBytes" };
  // Read per send: a reconnect may land on a server with another max_payload.
  const threshold = () => {
    const most = Math.max(1024, transport.maxPayload - HEADROOM);
    return Math.min(settings.thresholdBytes ?? Math.floor(transport.maxPayload / 2), most);
  };

  return {
    settings,
    encode(value, subjects, deadline, consumers) {
      limit.bytes = settings.maxValueBytes;
      const bytes = codec.encode(value, limit, alloc);
      if (bytes.length <= threshold()) return { payload: bytes, id: undefined };
      if (!store) {
        store = createChunkStore(transport, pool);
        const s = store;
        conn.onClose(async () => s.close());
      }
      const chunkSize = Math.min(MAX_CHUNK, Math.max(1024, transport.maxPayload - HEADROOM));
      const { id, ref } = store.put(bytes, subjects, chunkSize, deadline, consumers);
      return { payload: ref, id };
    },
    resolve(bytes, deadline, signal, what) {
      if (!isChunkRef(bytes)) return Promise.resolve(bytes);
      let ref;
      try {
        ref = decodeRef(bytes);
      } catch (err) {
        return Promise.reject(err);
      }
      const o = { deadline, signal, window: settings.window, pullTimeoutMs: settings.pullTimeoutMs, maxValueBytes: settings.maxValueBytes, pulling, what, dataOffset: codec.typedArrayOffset };
      // The assembled buffer is this value's alone: its large typed arrays may be views into it.
      return pullChunks(transport, ref, o).then((bytes) => codec.adopt(bytes));
    },
    drop(id) {
      if (id !== undefined) store?.drop(id);
    },
    stats() {
      let pullingBytes = 0;
      for (const b of pulling) pullingBytes += b.length;
      return { held: store?.held ?? 0, heldBytes: store?.heldBytes ?? 0, stored: store?.stored ?? 0, pulling: pulling.size, pullingBytes };
    },
  };
}
