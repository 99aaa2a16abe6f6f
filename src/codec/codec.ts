import { Decoder, Encoder, ExtensionCodec } from "@msgpack/msgpack";
import { CodecError } from "../errors/index.ts";
import { DEFAULT_MAX_PAYLOAD, MAX_LEVELS, measureEncodable } from "./bounds.ts";
import { errorFromRecord, errorRecord, isErrorValue } from "./error-values.ts";
import { createSmallDecoder, createSmallEncoder, NOT_SMALL } from "./small.ts";
import { decodeTypedArray, EXT_TYPED_ARRAY, SPLICE_BYTES, TAG_BYTES, typedArrayDataOffset, typedArrayEncoder, typedArrayTag } from "./typed-arrays.ts";

/**
 * The wire format: msgpack, plus extensions so that what users pass to actors comes back as the
 * same type. Typed arrays, Map, Set, Date (msgpack timestamp), BigInt (any size) and Error values
 * round-trip; `undefined` object fields are dropped and `undefined` values become `null`, as in
 * JSON. Bytes (Uint8Array, Buffer) decode as plain Uint8Arrays, whatever class the payload had.
 * Functions, symbols, cycles, nesting deeper than MAX_LEVELS and values that cannot fit in the
 * payload limit are refused with a CodecError before msgpack does any work (small.ts may have
 * tried, and given up within its SMALL_BYTES).
 */
export interface Codec {
  /**
   * `limit` replaces the payload limit for this value: a value that travels in chunks
   * (src/chunks) may be as large as the connection's maxValueBytes, named in the error.
   */
  encode(value: unknown, limit?: EncodeLimit, alloc?: Allocate): Uint8Array;
  decode<T = unknown>(bytes: Uint8Array): T;
  /**
   * Marks a buffer as belonging to the one value decoded from it (a value assembled from chunks):
   * its large typed arrays may then be views into it rather than copies. Returns `bytes`.
   */
  adopt(bytes: Uint8Array): Uint8Array;
  /** Where a typed array's elements start in `[typedArray, ...]` or `[0, typedArray]` (see typed-arrays.ts). */
  typedArrayOffset(head: Uint8Array): number | undefined;
}

export interface CodecOptions {
  /**
   * The largest message encode() may produce: the server's max_payload. A function is read on
   * every encode, so a connection that reconnects to a server with another limit follows it.
   * Default 64 MiB, the most a nats-server with default max_pending accepts.
   */
  maxPayload?: number | (() => number);
}

/**
 * Where a message with large typed arrays is assembled: a buffer of `size` bytes (not
 * necessarily zeroed: encode() writes every byte). A chunk store passes one that reuses the
 * buffers of values it has dropped.
 */
export type Allocate = (size: number) => Uint8Array;

/** A limit other than max_payload, and its name for the CodecError that refuses a value over it. */
export interface EncodeLimit {
  bytes: number;
  name: string;
}

/** Values whose size bound is over this are encoded apart (see encode()). */
const LARGE_VALUE = 1024 * 1024;

const EXT_MAP = 2;
const EXT_SET = 3;
const EXT_BIGINT = 4;
const EXT_ERROR = 5;

// msgpack's own depth check would count leaves and restart inside every extension; the walk in
// bounds.ts is the one that decides, so msgpack's is only kept out of its way.
const MSGPACK_MAX_DEPTH = 4 * MAX_LEVELS + 16;

export function createCodec(options: CodecOptions = {}): Codec {
  return makeCodec(options, true);
}

/**
 * The codec without small.ts's one-pass path: every value the checked way (the walk, then
 * msgpack with the extensions). Not exported from the package: tests compare the two with it.
 */
export function createCheckedCodec(options: CodecOptions = {}): Codec {
  return makeCodec(options, false);
}

function makeCodec(options: CodecOptions, onePass: boolean): Codec {
  const given = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  const read = typeof given === "function" ? given : () => given;
  // A getter over server INFO can say nothing (not connected yet): fall back rather than refuse all.
  const limit = () => {
    const n = read();
    return typeof n === "number" && n > 0 ? n : DEFAULT_MAX_PAYLOAD;
  };
  const ext = new Extensions();
  // Large typed arrays of the value encode() is encoding now, where their bytes go (see encode()).
  let splices: Splice[] | undefined;
  // Extension hooks run while the outer encoder is mid-message and may nest (a Map of Sets),
  // so their payloads get fresh encoders; the outer pair is reused, as its buffers are. A
  // nested encoder's positions are not the message's: nothing is spliced there.
  const encodeNested = (v: unknown) => {
    const outer = splices;
    splices = undefined;
    try {
      return new Encoder({ extensionCodec: ext, ignoreUndefined: true, maxDepth: MSGPACK_MAX_DEPTH }).encode(v);
    } finally {
      splices = outer;
    }
  };
  const decodeNested = (b: Uint8Array) => new Decoder({ extensionCodec: ext }).decode(b);
  // Buffers adopted by decode(): read once per decode, while its extensions run.
  const adopted = new WeakSet<ArrayBufferLike>();
  // How many may still be in `adopted` (dropped ones are not told): none, and decode() skips the lookup.
  let adoptions = 0;
  let owned = false;
  const stageTypedArray = typedArrayEncoder();
  // A large typed array leaves only its tag in msgpack's buffer (written as ext 32, which its
  // size would take anyway, at the position msgpack tells); encode() puts its bytes after it.
  const encodeTypedArray = (v: unknown) => {
    if (splices && ArrayBuffer.isView(v) && v.byteLength >= SPLICE_BYTES) {
      const tag = typedArrayTag(v);
      if (tag !== undefined) {
        const list = splices;
        return (at: number) => {
          list.push({ at, bytes: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
          return TAG_BYTES[tag]!;
        };
      }
    }
    return stageTypedArray(v);
  };
  ext.register({ type: EXT_TYPED_ARRAY, encode: encodeTypedArray, decode: (data) => decodeTypedArray(data, owned) });
  ext.register({
    type: EXT_MAP,
    encode: (v) => (v instanceof Map ? encodeNested([...v]) : null),
    decode: (data) => new Map(decodeNested(data) as [unknown, unknown][]),
  });
  ext.register({
    type: EXT_SET,
    encode: (v) => (v instanceof Set ? encodeNested([...v]) : null),
    decode: (data) => new Set(decodeNested(data) as unknown[]),
  });
  // Decimal text: any size round-trips (msgpack's int64 would silently wrap larger values).
  ext.register({
    type: EXT_BIGINT,
    encode: (v) => (typeof v === "bigint" ? new TextEncoder().encode(v.toString()) : null),
    decode: (data) => BigInt(new TextDecoder().decode(data)),
  });
  ext.register({
    type: EXT_ERROR,
    encode: (v) => (isErrorValue(v) ? encodeNested(errorRecord(v)) : null),
    decode: (data) => errorFromRecord(decodeNested(data)),
  });
  const encoder = new Encoder({ extensionCodec: ext, ignoreUndefined: true, maxDepth: MSGPACK_MAX_DEPTH });
  const largeEncoder = (bound: number) => new Encoder({ extensionCodec: ext, ignoreUndefined: true, maxDepth: MSGPACK_MAX_DEPTH, initialBufferSize: bound + 1024 });
  const decoder = new Decoder({ extensionCodec: ext });
  const small = createSmallEncoder();
  const smallDecoder = createSmallDecoder();

  return {
    encode(value, over, alloc) {
      const max = over ? over.bytes : limit();
      // Plain data of a few KiB (most calls and replies): one pass, that is its own bounds check.
      const done = onePass ? small.encode(value, max) : undefined;
      if (done !== undefined) return done;
      const { bound, spliced } = measureEncodable(value, max, over?.name);
      // Typed arrays of SPLICE_BYTES or more are copied once, straight into the message, rather
      // than into an extension payload and then again into msgpack's buffer.
      const rest = bound - spliced;
      let out: Uint8Array;
      splices = spliced > 0 ? [] : undefined;
      try {
        // A large value gets an encoder of its own, sized by the bound: the shared one would keep
        // a buffer of the largest value ever sent, and hand out a copy of it besides.
        out = rest > LARGE_VALUE ? largeEncoder(rest).encodeSharedRef(value) : encoder.encode(value);
        if (splices?.length) out = splice(out, splices, alloc);
      } catch (err) {
        throw new CodecError(explain(err), { cause: err });
      } finally {
        splices = undefined;
      }
      // The walk counts a lower bound; a value just under it can still encode a little over.
      if (over && out.length > over.bytes) {
        throw new CodecError(`value too large to send: it encodes to ${out.length} bytes, over the ${over.name} limit of ${over.bytes} bytes; send less per call, or raise ${over.name}`, {
          details: { bytes: out.length, limit: over.bytes, option: over.name },
        });
      }
      return out;
    },
    decode<T>(bytes: Uint8Array): T {
      // Once only: a second decode of the same bytes would alias the first one's arrays.
      owned = adoptions > 0 && adopted.delete(bytes.buffer);
      if (owned) adoptions--;
      try {
        // Plain data (most calls and replies) in one pass; anything else the full way.
        const v = onePass ? smallDecoder.decode(bytes) : NOT_SMALL;
        if (v !== NOT_SMALL) return v as T;
        return decoder.decode(plainBytes(bytes)) as T;
      } catch (err) {
        // Messages can quote the payload (BigInt text, for one): cut them, or the error reply
        // to a near-max_payload message would itself be too large to send.
        const m = String((err as Error)?.message ?? err);
        throw new CodecError(`cannot decode message: ${m.length > 200 ? `${m.slice(0, 200)}...` : m}`, { cause: err });
      } finally {
        owned = false;
      }
    },
    adopt(bytes) {
      if (!adopted.has(bytes.buffer)) adoptions++;
      adopted.add(bytes.buffer);
      return bytes;
    },
    typedArrayOffset: (head) => typedArrayDataOffset(head, EXT_TYPED_ARRAY),
  };
}

/**
 * msgpack asks every extension in turn about every array and object it encodes: plain ones,
 * which none of ours (typed arrays, Map, Set, BigInt, Error, Date) can be, are answered at once.
 */
class Extensions extends ExtensionCodec {
  override tryToEncode(object: unknown, context: undefined): ReturnType<ExtensionCodec["tryToEncode"]> {
    const proto: unknown = Object.getPrototypeOf(object);
    if (proto === Object.prototype || proto === null || (proto === Array.prototype && Array.isArray(object))) return null;
    return super.tryToEncode(object, context);
  }
}

/** A typed array left out of msgpack's buffer: its tag byte is at `at` there, its bytes follow it. */
interface Splice {
  at: number;
  bytes: Uint8Array;
}

/**
 * The message: what msgpack wrote, each spliced array's bytes after its tag, and its ext 32
 * header (format byte, 4-byte size, type, then the tag at `at`) given its real size. One copy
 * of each array, into a buffer of exactly the message's size.
 */
function splice(head: Uint8Array, splices: Splice[], alloc: Allocate = (n) => new Uint8Array(n)): Uint8Array {
  let size = head.length;
  for (const s of splices) size += s.bytes.byteLength;
  const out = alloc(size);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let from = 0;
  let to = 0;
  for (const s of splices) {
    view.setUint32(s.at - 5, 1 + s.bytes.byteLength);
    out.set(head.subarray(from, s.at + 1), to);
    to += s.at + 1 - from;
    from = s.at + 1;
    out.set(s.bytes, to);
    to += s.bytes.byteLength;
  }
  out.set(head.subarray(from), to);
  return out;
}

/**
 * msgpack hands out bin values as subarrays of its input, and a subarray has its parent's class:
 * nats.js delivers payloads as Node Buffers, which would reach methods and callers as Buffers.
 * A plain view over the same memory (no copy) makes every decoded Uint8Array a plain one.
 */
function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function explain(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  if (m.includes("call stack")) return "value is nested too deeply to encode; send flatter data";
  if (m.includes("Function")) return "functions cannot be sent to or from an actor; send plain data";
  if (m.includes("Symbol")) return "symbols cannot be sent to or from an actor; send plain data";
  if (err instanceof RangeError) return `value out of range for the wire format: ${m}`;
  return `value cannot be encoded: ${m}`;
}
