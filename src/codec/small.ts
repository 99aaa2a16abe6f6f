/**
 * The encoder of the values most calls carry: plain objects and arrays of numbers, strings,
 * booleans, null/undefined, bytes and typed arrays (tensor records: inference requests and
 * results), of at most SMALL_BYTES. It writes msgpack byte for byte as @msgpack/msgpack does
 * with the codec's extensions (ignoreUndefined; typed arrays as extension EXT_TYPED_ARRAY, see
 * typed-arrays.ts), in one pass that is also its own bounds check: a value it completes within
 * min(limit, SMALL_BYTES) bytes is one the walk of bounds.ts would have passed (its exact size is
 * over that walk's lower bound, its nesting under MAX_LEVELS, and it holds nothing the walk
 * refuses). Anything else (another class, a function, a symbol, a BigInt, a Map, a Set, an
 * Error, a DataView or a subclass of a typed array, deep or cyclic data, a value past the limit)
 * makes it give up, at once and before reading further, and codec.ts encodes the value the full
 * way: the walk first, with its typed CodecErrors, then msgpack with the extensions. Giving up
 * costs at most SMALL_BYTES of wasted writing: the walk refuses a 1e8-length array or a 100 MB
 * string by its length, and so does this, before looking at an element. Typed arrays large
 * enough for the codec to splice them in (SPLICE_BYTES) never fit here: they keep their one copy.
 * test/codec/small-typed-arrays.test.ts fuzzes both halves of this file against the checked path.
 */

import { EXT_TYPED_ARRAY, TYPED_ARRAY_KINDS, typedArrayTagOfPrototype } from "./typed-arrays.ts";

/** Values encoding to more than this take the full path. */
export const SMALL_BYTES = 64 * 1024;

/** Nesting past this takes the full path (well under MAX_LEVELS: deep or cyclic data is the walk's to judge). */
const SMALL_LEVELS = 32;

/** Strings longer than this are written with TextEncoder, as msgpack does. */
const TEXT_ENCODER_THRESHOLD = 50;

/** Typed arrays up to this many bytes are made on V8's heap (its typed_array_max_size_in_heap). */
const ON_HEAP_BYTES = 64;
/** Encoded messages are handed out as views of slabs of this size (see take()) ... */
const SLAB_BYTES = 64 * 1024;
/** ... when they are at most this large; larger ones get a buffer of their own. */
const SLAB_MESSAGE_BYTES = SLAB_BYTES / 8;

export interface SmallEncoder {
  /**
   * The encoded bytes (a copy: its own buffer, or a view of a slab of messages encoded before,
   * see take()), or undefined when the value is not for this encoder.
   */
  encode(value: unknown, limit: number): Uint8Array | undefined;
}

export function createSmallEncoder(): SmallEncoder {
  let bytes = new Uint8Array(2048);
  let view = new DataView(bytes.buffer);
  let pos = 0;
  let max = 0;
  // A getter of a value being encoded may encode another value: that one takes the full path.
  let entered = false;
  const text = new TextEncoder();

  /** Room for `n` more bytes within the budget; false when the value is too large for here. */
  const room = (n: number): boolean => {
    const need = pos + n;
    if (need > max) return false;
    if (need > bytes.length) {
      const grown = new Uint8Array(Math.min(SMALL_BYTES, Math.max(need, bytes.length * 2)));
      grown.set(bytes.subarray(0, pos));
      bytes = grown;
      view = new DataView(bytes.buffer);
    }
    return true;
  };

  // msgpack's length headers: a fix form below fixLimit (its tag plus the length; fixLimit 0
  // when the type has none), else 8-bit (tag8 0 when the type has none), 16- and 32-bit forms.
  const headerSize = (n: number, fixLimit: number, tag8: number): number => (n < fixLimit ? 1 : tag8 !== 0 && n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
  const header = (n: number, fix: number, fixLimit: number, tag8: number, tag16: number, tag32: number): void => {
    if (n < fixLimit) bytes[pos++] = fix + n;
    else if (tag8 !== 0 && n < 0x100) {
      bytes[pos++] = tag8;
      bytes[pos++] = n;
    } else if (n < 0x10000) {
      bytes[pos++] = tag16;
      view.setUint16(pos, n);
      pos += 2;
    } else {
      bytes[pos++] = tag32;
      view.setUint32(pos, n);
      pos += 4;
    }
  };

  const number = (x: number): boolean => {
    if (!room(9)) return false;
    if (Number.isSafeInteger(x)) {
      if (x >= 0) {
        if (x < 0x80) bytes[pos++] = x;
        else if (x < 0x100) {
          bytes[pos++] = 0xcc;
          bytes[pos++] = x;
        } else if (x < 0x10000) {
          bytes[pos++] = 0xcd;
          view.setUint16(pos, x);
          pos += 2;
        } else if (x < 0x100000000) {
          bytes[pos++] = 0xce;
          view.setUint32(pos, x);
          pos += 4;
        } else {
          bytes[pos++] = 0xcf;
          view.setUint32(pos, x / 4294967296);
          view.setUint32(pos + 4, x);
          pos += 8;
        }
      } else if (x >= -0x20) {
        bytes[pos++] = 0xe0 | (x + 0x20);
      } else if (x >= -0x80) {
        bytes[pos++] = 0xd0;
        view.setInt8(pos, x);
        pos += 1;
      } else if (x >= -0x8000) {
        bytes[pos++] = 0xd1;
        view.setInt16(pos, x);
        pos += 2;
      } else if (x >= -0x80000000) {
        bytes[pos++] = 0xd2;
        view.setInt32(pos, x);
        pos += 4;
      } else {
        bytes[pos++] = 0xd3;
        view.setUint32(pos, Math.floor(x / 4294967296));
        view.setUint32(pos + 4, x);
        pos += 8;
      }
    } else {
      bytes[pos++] = 0xcb;
      view.setFloat64(pos, x);
      pos += 8;
    }
    return true;
  };

  const string = (s: string): boolean => {
    const n = s.length;
    // UTF-8 never takes fewer bytes than UTF-16 code units: refused by its length, unread.
    if (pos + 1 + n > max) return false;
    // Short ASCII (most keys and strings): header and characters in one pass.
    if (n < 32) {
      if (!room(1 + n)) return false;
      const start = pos;
      bytes[pos++] = 0xa0 + n;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        bytes[pos + i] = c;
      }
      if (i === n) {
        pos += n;
        return true;
      }
      pos = start; // not ASCII: counted and written below
    }
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (s.charCodeAt(i) > 0x7f) {
        ascii = false;
        break;
      }
    }
    const size = ascii ? n : utf8Count(s);
    if (!room(headerSize(size, 32, 0xd9) + size)) return false;
    header(size, 0xa0, 32, 0xd9, 0xda, 0xdb);
    if (ascii) {
      for (let i = 0; i < n; i++) bytes[pos + i] = s.charCodeAt(i);
    } else if (n > TEXT_ENCODER_THRESHOLD) {
      text.encodeInto(s, bytes.subarray(pos, pos + size));
    } else {
      utf8Write(s, bytes, pos);
    }
    pos += size;
    return true;
  };

  const value = (v: unknown, level: number): boolean => {
    switch (typeof v) {
      case "number":
        return number(v);
      case "string":
        return string(v);
      case "boolean":
        if (!room(1)) return false;
        bytes[pos++] = v ? 0xc3 : 0xc2;
        return true;
      case "undefined":
        if (!room(1)) return false;
        bytes[pos++] = 0xc0;
        return true;
      case "object":
        break;
      default:
        return false; // bigint, function, symbol: the full path's
    }
    if (v === null) {
      if (!room(1)) return false;
      bytes[pos++] = 0xc0;
      return true;
    }
    if (level > SMALL_LEVELS) return false;
    const proto = Object.getPrototypeOf(v);
    if (proto === Array.prototype && Array.isArray(v)) return array(v as unknown[], level);
    if (proto === Object.prototype || proto === null) return map(v as Record<string, unknown>, level);
    if (proto === Uint8Array.prototype) return bin(v as Uint8Array);
    return typedArray(v as ArrayBufferView, proto);
  };

  const array = (a: unknown[], level: number): boolean => {
    const n = a.length;
    // Every element takes at least one byte: a sparse array of length 1e8 is refused unread.
    if (pos + 1 + n > max || n >= 0x100000000) return false;
    if (!room(headerSize(n, 16, 0))) return false;
    header(n, 0x90, 16, 0, 0xdc, 0xdd);
    const inner = level + 1;
    for (let i = 0; i < n; i++) if (!value(a[i], inner)) return false;
    return true;
  };

  const map = (o: Record<string, unknown>, level: number): boolean => {
    const keys = Object.keys(o);
    const k = keys.length;
    // Each field is at least a key header and a one-byte value.
    if (pos + 1 + 2 * k > max) return false;
    const inner = level + 1;
    if (k < 16) {
      // At most 15 fields: a fixmap, its count written once the undefined ones are skipped.
      if (!room(1)) return false;
      const at = pos++;
      let count = 0;
      for (let i = 0; i < k; i++) {
        const key = keys[i]!;
        const x = o[key];
        if (x === undefined) continue; // dropped, as in JSON
        if (!string(key) || !value(x, inner)) return false;
        count++;
      }
      bytes[at] = 0x80 + count;
      return true;
    }
    let count = 0;
    for (let i = 0; i < k; i++) if (o[keys[i]!] !== undefined) count++;
    if (!room(headerSize(count, 16, 0))) return false;
    header(count, 0x80, 16, 0, 0xde, 0xdf);
    let written = 0;
    for (let i = 0; i < k; i++) {
      const key = keys[i]!;
      const x = o[key];
      if (x === undefined) continue;
      if (!string(key) || !value(x, inner)) return false;
      written++;
    }
    // A getter that answered differently the second time: the header would lie.
    return written === count;
  };

  const bin = (b: Uint8Array): boolean => {
    const size = b.byteLength;
    if (!room(headerSize(size, 0, 0xc4) + size)) return false;
    header(size, 0, 0, 0xc4, 0xc5, 0xc6);
    bytes.set(b, pos);
    pos += size;
    return true;
  };

  /**
   * Extension EXT_TYPED_ARRAY, as the codec's hook writes it (typed-arrays.ts): the element
   * type's tag, then the elements' bytes; msgpack's header for that payload (fixext 1/2/4/8/16,
   * else ext 8 or ext 16). A typed array large enough to be spliced (SPLICE_BYTES) never fits
   * within SMALL_BYTES, nor does one that would need ext 32. Another prototype (a subclass, a
   * DataView, a Buffer) is the full path's.
   */
  const typedArray = (v: ArrayBufferView, proto: unknown): boolean => {
    const tag = typedArrayTagOfPrototype(proto);
    if (tag === undefined) return false;
    const n = v.byteLength;
    const size = 1 + n;
    if (size >= 0x10000) return false;
    const fixed = size === 1 || size === 2 || size === 4 || size === 8 || size === 16;
    if (!room((fixed ? 2 : size < 0x100 ? 3 : 4) + size)) return false;
    switch (size) {
      case 1:
        bytes[pos++] = 0xd4;
        break;
      case 2:
        bytes[pos++] = 0xd5;
        break;
      case 4:
        bytes[pos++] = 0xd6;
        break;
      case 8:
        bytes[pos++] = 0xd7;
        break;
      case 16:
        bytes[pos++] = 0xd8;
        break;
      default:
        if (size < 0x100) {
          bytes[pos++] = 0xc7;
          bytes[pos++] = size;
        } else {
          bytes[pos++] = 0xc8;
          bytes[pos++] = size >>> 8;
          bytes[pos++] = size & 0xff;
        }
    }
    bytes[pos++] = EXT_TYPED_ARRAY;
    bytes[pos++] = tag;
    // Even when empty: a view of a detached buffer throws here as in the codec's hook, and the
    // full path reports it.
    bytes.set(new Uint8Array(v.buffer, v.byteOffset, n), pos);
    pos += n;
    return true;
  };

  // Encoded messages past V8's on-heap size are handed out as views of slabs shared with the
  // messages encoded before: an ArrayBuffer of its own per message (a tensor record's request
  // or result, say) was a good part of the cost of encoding it. A slab is let go when full,
  // never written again, and freed once the last message in it is dropped.
  let slab: Uint8Array | undefined;
  let slabAt = SLAB_BYTES;
  const take = (): Uint8Array => {
    const n = pos;
    if (n <= ON_HEAP_BYTES || n > SLAB_MESSAGE_BYTES) return bytes.slice(0, n);
    if (slabAt + n > SLAB_BYTES) {
      slab = new Uint8Array(SLAB_BYTES);
      slabAt = 0;
    }
    const at = slabAt;
    // 8-byte aligned starts: a receiver in this process could view typed arrays in place.
    slabAt = (at + n + 7) & ~7;
    slab!.set(bytes.subarray(0, n), at);
    return new Uint8Array(slab!.buffer, at, n);
  };

  return {
    encode(v, limit) {
      if (entered) return undefined;
      entered = true;
      pos = 0;
      max = Math.min(limit, SMALL_BYTES);
      try {
        return value(v, 0) ? take() : undefined;
      } catch {
        // A getter or proxy that throws: the full path reads the value again and reports it.
        return undefined;
      } finally {
        entered = false;
      }
    },
  };
}

/** UTF-8 bytes of `s` as msgpack counts them (a lone surrogate: 3 bytes). */
function utf8Count(s: string): number {
  const n = s.length;
  let size = 0;
  let i = 0;
  while (i < n) {
    let c = s.charCodeAt(i++);
    if ((c & 0xffffff80) === 0) {
      size++;
      continue;
    }
    if ((c & 0xfffff800) === 0) {
      size += 2;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i < n) {
      const extra = s.charCodeAt(i);
      if ((extra & 0xfc00) === 0xdc00) {
        ++i;
        c = ((c & 0x3ff) << 10) + (extra & 0x3ff) + 0x10000;
      }
    }
    size += (c & 0xffff0000) === 0 ? 3 : 4;
  }
  return size;
}

/** msgpack's own writer for short strings (utf8EncodeJs), byte for byte. */
function utf8Write(s: string, out: Uint8Array, at: number): void {
  const n = s.length;
  let o = at;
  let i = 0;
  while (i < n) {
    let c = s.charCodeAt(i++);
    if ((c & 0xffffff80) === 0) {
      out[o++] = c;
      continue;
    }
    if ((c & 0xfffff800) === 0) {
      out[o++] = ((c >> 6) & 0x1f) | 0xc0;
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i < n) {
        const extra = s.charCodeAt(i);
        if ((extra & 0xfc00) === 0xdc00) {
          ++i;
          c = ((c & 0x3ff) << 10) + (extra & 0x3ff) + 0x10000;
        }
      }
      if ((c & 0xffff0000) === 0) {
        out[o++] = ((c >> 12) & 0x0f) | 0xe0;
        out[o++] = ((c >> 6) & 0x3f) | 0x80;
      } else {
        out[o++] = ((c >> 18) & 0x07) | 0xf0;
        out[o++] = ((c >> 12) & 0x3f) | 0x80;
        out[o++] = ((c >> 6) & 0x3f) | 0x80;
      }
    }
    out[o++] = (c & 0x3f) | 0x80;
  }
}

/** What the small decoder answers for a message that is not for it. */
export const NOT_SMALL: unique symbol = Symbol("not small");

/** Strings longer than this are read with TextDecoder, as msgpack does. */
const TEXT_DECODER_THRESHOLD = 200;

/** Map keys this short are kept and reused, as msgpack does. */
const KEY_BYTES = 16;
const KEYS_PER_LENGTH = 16;

// Node's own reader of one-byte text: for ASCII the same string, made natively (past a few
// characters, cheaper than building it a character at a time).
const latin1Slice = typeof Buffer === "function" ? (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice : undefined;

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

export interface SmallDecoder {
  /**
   * The value of a message made only of nil, booleans, integers, floats, strings, bytes, typed
   * arrays (EXT_TYPED_ARRAY), arrays and maps with string keys, decoded as the codec's checked
   * path decodes it: bytes as plain Uint8Array views of the message, typed arrays as aligned
   * copies. NOT_SMALL for anything else (other extensions, a truncated or malformed message,
   * trailing bytes, a __proto__ key, nesting past SMALL_LEVELS), which codec.ts then decodes the
   * full way, with its errors.
   * Never throws. Lengths are checked against the bytes left before anything is allocated;
   * messages over SMALL_BYTES are not tried, so giving up wastes little.
   */
  decode(bytes: Uint8Array): unknown;
}

export function createSmallDecoder(): SmallDecoder {
  let b: Uint8Array = new Uint8Array(0);
  let pos = 0;
  let end = 0;
  const f64 = new Float64Array(1);
  const f64Bytes = new Uint8Array(f64.buffer);
  const f32 = new Float32Array(1);
  const f32Bytes = new Uint8Array(f32.buffer);
  const stage = new Uint8Array(ON_HEAP_BYTES);
  const text = new TextDecoder();
  // Per key length, [bytes, string] pairs: the keys a service's messages use, decoded once.
  const keyCache: { bytes: Uint8Array; str: string }[][] = Array.from({ length: KEY_BYTES + 1 }, () => []);

  const str = (n: number): string | typeof NOT_SMALL => {
    if (n > end - pos) return NOT_SMALL;
    const at = pos;
    pos += n;
    if (n > TEXT_DECODER_THRESHOLD) return text.decode(b.subarray(at, at + n));
    let ascii = true;
    for (let i = at; i < at + n; i++) {
      if (b[i]! > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (!ascii) return utf8Read(b, at, n);
    if (n > 8 && latin1Slice) return latin1Slice.call(b, at, at + n);
    let s = "";
    for (let i = at; i < at + n; i++) s += String.fromCharCode(b[i]!);
    return s;
  };

  const key = (): string | typeof NOT_SMALL => {
    if (pos >= end) return NOT_SMALL;
    const h = b[pos++]!;
    let n: number;
    if (h >= 0xa0 && h <= 0xbf) n = h - 0xa0;
    else if (h === 0xd9 && pos < end) n = b[pos++]!;
    else if (h === 0xda && pos + 1 < end) {
      n = (b[pos]! << 8) | b[pos + 1]!;
      pos += 2;
    } else return NOT_SMALL; // str 32 keys, number keys, anything else: the full path's
    if (n === 0 || n > KEY_BYTES || n > end - pos) {
      const s = str(n);
      return s === "__proto__" ? NOT_SMALL : s;
    }
    const list = keyCache[n]!;
    find: for (let r = 0; r < list.length; r++) {
      const kb = list[r]!.bytes;
      for (let j = 0; j < n; j++) if (kb[j] !== b[pos + j]) continue find;
      pos += n;
      return list[r]!.str;
    }
    const at = pos;
    const s = str(n);
    if (s === NOT_SMALL || s === "__proto__") return NOT_SMALL;
    // A copy: a Node Buffer's slice() is a view into the message.
    const copy = new Uint8Array(n);
    copy.set(b.subarray(at, at + n));
    const entry = { bytes: copy, str: s };
    if (list.length < KEYS_PER_LENGTH) list.push(entry);
    else list[(at + n) % KEYS_PER_LENGTH] = entry;
    return s;
  };

  const value = (level: number): unknown => {
    if (pos >= end) return NOT_SMALL;
    const h = b[pos++]!;
    if (h < 0x80) return h;
    if (h >= 0xe0) return h - 0x100;
    if (h >= 0xa0 && h <= 0xbf) return str(h - 0xa0);
    if (h >= 0x90 && h <= 0x9f) return array(h - 0x90, level);
    if (h >= 0x80 && h <= 0x8f) return map(h - 0x80, level);
    const left = end - pos;
    switch (h) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xcb:
        if (left < 8) return NOT_SMALL;
        if (LITTLE_ENDIAN) for (let i = 0; i < 8; i++) f64Bytes[7 - i] = b[pos + i]!;
        else for (let i = 0; i < 8; i++) f64Bytes[i] = b[pos + i]!;
        pos += 8;
        return f64[0];
      case 0xc4:
        if (left < 1) return NOT_SMALL;
        return bin(b[pos++]!);
      case 0xc5:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return bin((b[pos - 2]! << 8) | b[pos - 1]!);
      case 0xc6:
        if (left < 4) return NOT_SMALL;
        pos += 4;
        return bin(u32(pos - 4));
      case 0xc7:
        if (left < 1) return NOT_SMALL;
        return ext(b[pos++]!);
      case 0xc8:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return ext((b[pos - 2]! << 8) | b[pos - 1]!);
      case 0xca:
        if (left < 4) return NOT_SMALL;
        if (LITTLE_ENDIAN) for (let i = 0; i < 4; i++) f32Bytes[3 - i] = b[pos + i]!;
        else for (let i = 0; i < 4; i++) f32Bytes[i] = b[pos + i]!;
        pos += 4;
        return f32[0];
      case 0xcc:
        if (left < 1) return NOT_SMALL;
        return b[pos++];
      case 0xcd:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return (b[pos - 2]! << 8) | b[pos - 1]!;
      case 0xce:
        if (left < 4) return NOT_SMALL;
        pos += 4;
        return u32(pos - 4);
      case 0xcf:
        if (left < 8) return NOT_SMALL;
        pos += 8;
        return u32(pos - 8) * 4294967296 + u32(pos - 4);
      case 0xd0:
        if (left < 1) return NOT_SMALL;
        return (b[pos++]! << 24) >> 24;
      case 0xd1:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return (((b[pos - 2]! << 8) | b[pos - 1]!) << 16) >> 16;
      case 0xd2:
        if (left < 4) return NOT_SMALL;
        pos += 4;
        return u32(pos - 4) | 0;
      case 0xd3:
        if (left < 8) return NOT_SMALL;
        pos += 8;
        return (u32(pos - 8) | 0) * 4294967296 + u32(pos - 4);
      case 0xd4:
        return ext(1);
      case 0xd5:
        return ext(2);
      case 0xd6:
        return ext(4);
      case 0xd7:
        return ext(8);
      case 0xd8:
        return ext(16);
      case 0xd9:
        if (left < 1) return NOT_SMALL;
        return str(b[pos++]!);
      case 0xda:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return str((b[pos - 2]! << 8) | b[pos - 1]!);
      case 0xdb:
        if (left < 4) return NOT_SMALL;
        pos += 4;
        return str(u32(pos - 4));
      case 0xdc:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return array((b[pos - 2]! << 8) | b[pos - 1]!, level);
      case 0xdd:
        if (left < 4) return NOT_SMALL;
        pos += 4;
        return array(u32(pos - 4), level);
      case 0xde:
        if (left < 2) return NOT_SMALL;
        pos += 2;
        return map((b[pos - 2]! << 8) | b[pos - 1]!, level);
      case 0xdf:
        if (left < 4) return NOT_SMALL;
        pos += 4;
        return map(u32(pos - 4), level);
      default:
        return NOT_SMALL; // ext 32 (never within SMALL_BYTES from an encoder of ours), 0xc1
    }
  };

  /** Bytes: a plain Uint8Array view of the message, as the codec gives them (never a Node Buffer). */
  const bin = (n: number): unknown => {
    if (n > end - pos) return NOT_SMALL;
    const out = new Uint8Array(b.buffer, b.byteOffset + pos, n);
    pos += n;
    return out;
  };

  /**
   * An extension of `size` bytes of payload: a typed array (EXT_TYPED_ARRAY) is a copy into a
   * fresh, aligned array of its own, as decodeTypedArray makes it. Other extensions, an unknown
   * tag, or a payload that is not a whole number of elements are the full path's, which decodes
   * them or says what is wrong.
   */
  const ext = (size: number): unknown => {
    if (size + 1 > end - pos || size < 1 || b[pos] !== EXT_TYPED_ARRAY) return NOT_SMALL;
    const ctor = TYPED_ARRAY_KINDS[b[pos + 1]!];
    if (ctor === undefined) return NOT_SMALL;
    const n = size - 1;
    const per = ctor.BYTES_PER_ELEMENT;
    if (n % per !== 0) return NOT_SMALL;
    const count = n / per;
    const from = b.byteOffset + pos + 2;
    pos += 1 + size;
    const out = new ctor(count);
    if (n > ON_HEAP_BYTES) {
      new Uint8Array(out.buffer, 0, n).set(new Uint8Array(b.buffer, from, n));
    } else if (n > 0) {
      // Small arrays live on V8's heap until their .buffer is asked for, which moves them off
      // it (the larger part of their cost): their bytes go through an aligned stage instead.
      stage.set(new Uint8Array(b.buffer, from, n));
      (out as Float64Array).set(new (ctor as Float64ArrayConstructor)(stage.buffer, 0, count));
    }
    return out;
  };

  const u32 = (at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

  const array = (n: number, level: number): unknown => {
    if (n === 0) return [];
    // Every element takes at least one byte: a claimed length past the message is not read.
    if (level >= SMALL_LEVELS || n > end - pos) return NOT_SMALL;
    const out = new Array<unknown>(n);
    const inner = level + 1;
    for (let i = 0; i < n; i++) {
      const x = value(inner);
      if (x === NOT_SMALL) return NOT_SMALL;
      out[i] = x;
    }
    return out;
  };

  const map = (n: number, level: number): unknown => {
    if (n === 0) return {};
    if (level >= SMALL_LEVELS || 2 * n > end - pos) return NOT_SMALL;
    const out: Record<string, unknown> = {};
    const inner = level + 1;
    for (let i = 0; i < n; i++) {
      const k = key();
      if (k === NOT_SMALL) return NOT_SMALL;
      const x = value(inner);
      if (x === NOT_SMALL) return NOT_SMALL;
      out[k] = x;
    }
    return out;
  };

  let entered = false;
  return {
    decode(bytes) {
      if (entered || bytes.length > SMALL_BYTES) return NOT_SMALL;
      entered = true;
      b = bytes;
      pos = 0;
      end = bytes.length;
      try {
        const v = value(0);
        return pos === end ? v : NOT_SMALL;
      } catch {
        return NOT_SMALL;
      } finally {
        b = EMPTY;
        entered = false;
      }
    },
  };
}

const EMPTY = new Uint8Array(0);

/** msgpack's reader of short non-ASCII strings (utf8DecodeJs), quirk for quirk. */
function utf8Read(bytes: Uint8Array, inputOffset: number, byteLength: number): string {
  let offset = inputOffset;
  const end = offset + byteLength;
  const units: number[] = [];
  while (offset < end) {
    const byte1 = bytes[offset++]!;
    if ((byte1 & 0x80) === 0) {
      units.push(byte1);
    } else if ((byte1 & 0xe0) === 0xc0) {
      const byte2 = bytes[offset++]! & 0x3f;
      units.push(((byte1 & 0x1f) << 6) | byte2);
    } else if ((byte1 & 0xf0) === 0xe0) {
      const byte2 = bytes[offset++]! & 0x3f;
      const byte3 = bytes[offset++]! & 0x3f;
      units.push(((byte1 & 0x1f) << 12) | (byte2 << 6) | byte3);
    } else if ((byte1 & 0xf8) === 0xf0) {
      const byte2 = bytes[offset++]! & 0x3f;
      const byte3 = bytes[offset++]! & 0x3f;
      const byte4 = bytes[offset++]! & 0x3f;
      let unit = ((byte1 & 0x07) << 0x12) | (byte2 << 0x0c) | (byte3 << 0x06) | byte4;
      if (unit > 0xffff) {
        unit -= 0x10000;
        units.push(((unit >>> 10) & 0x3ff) | 0xd800);
        unit = 0xdc00 | (unit & 0x3ff);
      }
      units.push(unit);
    } else {
      units.push(byte1);
    }
  }
  return String.fromCharCode(...units);
}
