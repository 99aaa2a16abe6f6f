import { decode, encode, ExtData } from "@msgpack/msgpack";
import { CodecError } from "../errors/index.ts";

/**
 * Where a large value waits to be pulled: sent in place of the value, as the whole payload of a
 * call or reply. It is a msgpack extension value at the top level, which no call (an argument
 * array) or reply ([status, ...]) ever is, so one or two bytes tell it apart without a decode,
 * and relays, which pass payloads as bytes, carry it without knowing. The sha256 digest is not
 * in it: the sender hashes chunks as it first serves them (not before the ref leaves, which would
 * put a pass over the whole value on the call's path) and answers it once all were pulled.
 */
export interface ChunkRef {
  /** The chunk subject of the connection holding the value. */
  subject: string;
  id: string;
  /** Encoded size of the value. */
  total: number;
  chunkSize: number;
}

// Not registered with the codec: a ref is never a value inside a message, only a whole payload.
const EXT_CHUNK_REF = 0x30;

export function encodeRef(ref: ChunkRef): Uint8Array {
  return encode(new ExtData(EXT_CHUNK_REF, encode([ref.subject, ref.id, ref.total, ref.chunkSize])));
}

/** Whether a payload is a ChunkRef: an ext 8 or ext 16 header carrying its type. */
export function isChunkRef(bytes: Uint8Array): boolean {
  const b0 = bytes[0];
  return (b0 === 0xc7 && bytes[2] === EXT_CHUNK_REF) || (b0 === 0xc8 && bytes[3] === EXT_CHUNK_REF);
}

export function decodeRef(bytes: Uint8Array): ChunkRef {
  let f: unknown;
  try {
    const ext = decode(bytes);
    f = ext instanceof ExtData && ext.type === EXT_CHUNK_REF ? decode(ext.data as Uint8Array) : undefined;
  } catch (err) {
    throw new CodecError(`malformed chunk reference: ${(err as Error)?.message ?? err}`, { cause: err });
  }
  if (
    !Array.isArray(f) ||
    typeof f[0] !== "string" ||
    typeof f[1] !== "string" ||
    !Number.isSafeInteger(f[2]) || f[2] < 0 ||
    !Number.isSafeInteger(f[3]) || f[3] < 1
  ) {
    throw new CodecError("malformed chunk reference: expected [subject, id, total, chunkSize]");
  }
  return { subject: f[0], id: f[1], total: f[2], chunkSize: f[3] };
}
