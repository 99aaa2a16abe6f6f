/**
 * The request and reply envelopes of inference calls in one pass, without the codec's full path.
 *
 * Inference inputs and results are tensor records: plain objects of typed arrays and numbers.
 * The codec's fast encoder (src/codec/small.ts) takes plain data only, so every request and
 * every result went the full way (a bounds walk, then msgpack with its extension lookups), and
 * every decode through msgpack's Decoder with its extension dispatch: together the largest CPU
 * cost of a call on both sides. Here they are written and read directly.
 *
 * Byte for byte the codec's format (msgpack, ignoreUndefined, typed arrays as extension 1: one
 * tag byte, then the raw little-endian elements): either side may be older, newer, or take the
 * codec's path for a value, and the other cannot tell. Anything outside the common case (another
 * class, a Map, a BigInt, non-ASCII text, 64-bit integers, deep data, a value near a size limit)
 * makes these give up before they have produced anything, and the caller takes the codec's path,
 * with its checks and its errors, exactly as before.
 */
import { typedArrayTag } from "../codec/typed-arrays.ts";

/** msgpack extension type of typed arrays (src/codec/codec.ts). */
const EXT_TYPED_ARRAY = 1;
/** Values encoding to more than this are the codec's (it splices large typed arrays). */
export const FAST_BYTES = 64 * 1024;
/** Encoded messages are handed out as views of slabs of this size (see FastWire.take). */
const SLAB_BYTES = 64 * 1024;
/** Nesting past this is the codec's to judge (deep or cyclic data). */
const FAST_LEVELS = 32;

/** Element types by the tag they travel with: the codec's order (src/codec/typed-arrays.ts). */
const KINDS = [Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array] as const;

/** Given back by `decode` when the bytes are not for this decoder: use the codec. */
export const NOT_FAST: unique symbol = Symbol("not fast");

export class FastWire {
  private bytes: Uint8Array = new Uint8Array(2048);
  private view: DataView = new DataView(this.bytes.buffer);
  private pos = 0;
  private max = 0;
  private busy = false;
  private slab = new Uint8Array(SLAB_BYTES);
  private slabAt = 0;

  /**
   * `[a, b, c, d, value]` (`head` then `value`), encoded into a fresh buffer, or undefined when
   * it is not for this encoder or would encode to more than `limit` bytes.
   */
  encode(head: readonly unknown[], value: unknown, limit: number): Uint8Array | undefined {
    // A getter of a value being encoded might encode another one: that one takes the codec.
    if (this.busy) return undefined;
    this.busy = true;
    try {
      this.pos = 0;
      this.max = Math.min(limit, FAST_BYTES);
      const n = head.length + 1;
      if (n >= 16 || !this.room(1)) return undefined;
      this.bytes[this.pos++] = 0x90 + n;
      for (let i = 0; i < head.length; i++) if (!this.value(head[i], 1)) return undefined;
      if (!this.value(value, 1)) return undefined;
      return this.take();
    } catch {
      return undefined; // a throwing getter, say: the codec reports it as it always did
    } finally {
      this.busy = false;
    }
  }

  /**
   * The bytes written, as a view of a slab shared with the messages encoded before: a buffer of
   * its own per message was a good part of the cost of a small one. A slab is let go when full,
   * and freed once the last message in it has been sent and dropped.
   */
  private take(): Uint8Array {
    const n = this.pos;
    if (n > SLAB_BYTES / 8) return this.bytes.slice(0, n);
    if (this.slabAt + n > SLAB_BYTES) {
      this.slab = new Uint8Array(SLAB_BYTES);
      this.slabAt = 0;
    }
    const at = this.slabAt;
    // 8-byte aligned starts: a receiver in this process could view typed arrays in place.
    this.slabAt = (at + n + 7) & ~7;
    this.slab.set(this.bytes.subarray(0, n), at);
    return new Uint8Array(this.slab.buffer, at, n);
  }

  private room(n: number): boolean {
    const need = this.pos + n;
    if (need > this.max) return false;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.min(FAST_BYTES, Math.max(need, this.bytes.length * 2)));
      grown.set(this.bytes.subarray(0, this.pos));
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    return true;
  }

  private value(v: unknown, level: number): boolean {
    switch (typeof v) {
      case "number":
        return this.number(v);
      case "string":
        return this.string(v);
      case "boolean":
        if (!this.room(1)) return false;
        this.bytes[this.pos++] = v ? 0xc3 : 0xc2;
        return true;
      case "undefined":
        if (!this.room(1)) return false;
        this.bytes[this.pos++] = 0xc0;
        return true;
      case "object":
        break;
      default:
        return false;
    }
    if (v === null) {
      if (!this.room(1)) return false;
      this.bytes[this.pos++] = 0xc0;
      return true;
    }
    if (level > FAST_LEVELS) return false;
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) return this.map(v as Record<string, unknown>, level);
    if (proto === Array.prototype && Array.isArray(v)) return this.array(v as unknown[], level);
    if (proto === Uint8Array.prototype) return this.bin(v as Uint8Array);
    return this.typedArray(v as ArrayBufferView);
  }

  private number(x: number): boolean {
    if (!this.room(9)) return false;
    const b = this.bytes;
    const view = this.view;
    if (Number.isSafeInteger(x)) {
      if (x >= 0) {
        if (x < 0x80) b[this.pos++] = x;
        else if (x < 0x100) {
          b[this.pos++] = 0xcc;
          b[this.pos++] = x;
        } else if (x < 0x10000) {
          b[this.pos++] = 0xcd;
          view.setUint16(this.pos, x);
          this.pos += 2;
        } else if (x < 0x100000000) {
          b[this.pos++] = 0xce;
          view.setUint32(this.pos, x);
          this.pos += 4;
        } else {
          b[this.pos++] = 0xcf;
          view.setUint32(this.pos, x / 4294967296);
          view.setUint32(this.pos + 4, x);
          this.pos += 8;
        }
      } else if (x >= -0x20) {
        b[this.pos++] = 0xe0 | (x + 0x20);
      } else if (x >= -0x80) {
        b[this.pos++] = 0xd0;
        view.setInt8(this.pos, x);
        this.pos += 1;
      } else if (x >= -0x8000) {
        b[this.pos++] = 0xd1;
        view.setInt16(this.pos, x);
        this.pos += 2;
      } else if (x >= -0x80000000) {
        b[this.pos++] = 0xd2;
        view.setInt32(this.pos, x);
        this.pos += 4;
      } else {
        b[this.pos++] = 0xd3;
        view.setUint32(this.pos, Math.floor(x / 4294967296));
        view.setUint32(this.pos + 4, x);
        this.pos += 8;
      }
    } else {
      b[this.pos++] = 0xcb;
      view.setFloat64(this.pos, x);
      this.pos += 8;
    }
    return true;
  }

  /** ASCII only (keys and short tags, in practice); other text is the codec's. */
  private string(s: string): boolean {
    const n = s.length;
    if (n >= 0x10000) return false;
    const header = n < 32 ? 1 : n < 0x100 ? 2 : 3;
    if (!this.room(header + n)) return false;
    const b = this.bytes;
    let at = this.pos + header;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return false;
      b[at++] = c;
    }
    if (n < 32) b[this.pos] = 0xa0 + n;
    else if (n < 0x100) {
      b[this.pos] = 0xd9;
      b[this.pos + 1] = n;
    } else {
      b[this.pos] = 0xda;
      this.view.setUint16(this.pos + 1, n);
    }
    this.pos = at;
    return true;
  }

  private array(a: unknown[], level: number): boolean {
    const n = a.length;
    if (n >= 0x10000 || this.pos + 1 + n > this.max) return false;
    if (!this.room(n < 16 ? 1 : 3)) return false;
    if (n < 16) this.bytes[this.pos++] = 0x90 + n;
    else {
      this.bytes[this.pos++] = 0xdc;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    }
    for (let i = 0; i < n; i++) if (!this.value(a[i], level + 1)) return false;
    return true;
  }

  private map(o: Record<string, unknown>, level: number): boolean {
    const keys = Object.keys(o);
    // Fields whose value is undefined are left out (ignoreUndefined), and not counted.
    let k = 0;
    for (let i = 0; i < keys.length; i++) if (o[keys[i]!] !== undefined) k++;
    if (k >= 0x10000 || this.pos + 1 + 2 * k > this.max) return false;
    if (!this.room(k < 16 ? 1 : 3)) return false;
    if (k < 16) this.bytes[this.pos++] = 0x80 + k;
    else {
      this.bytes[this.pos++] = 0xde;
      this.view.setUint16(this.pos, k);
      this.pos += 2;
    }
    let written = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const v = o[key];
      if (v === undefined) continue;
      // A getter that changed its mind between the count and now: the codec's business.
      if (++written > k) return false;
      if (!this.string(key) || !this.value(v, level + 1)) return false;
    }
    return written === k;
  }

  private bin(v: Uint8Array): boolean {
    const n = v.byteLength;
    if (n >= 0x10000 || !this.room(3 + n)) return false;
    if (n < 0x100) {
      this.bytes[this.pos++] = 0xc4;
      this.bytes[this.pos++] = n;
    } else {
      this.bytes[this.pos++] = 0xc5;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    }
    this.bytes.set(v, this.pos);
    this.pos += n;
    return true;
  }

  /** Extension 1: the element type's tag, then the elements' bytes (see src/codec/typed-arrays.ts). */
  private typedArray(v: ArrayBufferView): boolean {
    if (!ArrayBuffer.isView(v) || v instanceof DataView) return false;
    const tag = typedArrayTag(v);
    if (tag === undefined) return false;
    const size = 1 + v.byteLength;
    if (size >= 0x10000 || !this.room(4 + size)) return false;
    const b = this.bytes;
    // msgpack's ext header for `size` bytes of payload: fixext 1/2/4/8/16, else ext 8 / ext 16.
    switch (size) {
      case 1:
        b[this.pos++] = 0xd4;
        break;
      case 2:
        b[this.pos++] = 0xd5;
        break;
      case 4:
        b[this.pos++] = 0xd6;
        break;
      case 8:
        b[this.pos++] = 0xd7;
        break;
      case 16:
        b[this.pos++] = 0xd8;
        break;
      default:
        if (size < 0x100) {
          b[this.pos++] = 0xc7;
          b[this.pos++] = size;
        } else {
          b[this.pos++] = 0xc8;
          this.view.setUint16(this.pos, size);
          this.pos += 2;
        }
    }
    b[this.pos++] = EXT_TYPED_ARRAY;
    b[this.pos++] = tag;
    b.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), this.pos);
    this.pos += v.byteLength;
    return true;
  }
}

/**
 * What the codec would decode `bytes` to, or NOT_FAST when they hold anything but plain data,
 * bytes and typed arrays (then the codec decodes them, and reports what is wrong with them).
 * Bytes decode as plain Uint8Array views of the message, typed arrays as aligned copies, as the
 * codec does.
 */
export function decodeFast(bytes: Uint8Array): unknown {
  if (bytes.length > FAST_BYTES) return NOT_FAST;
  const r = reader;
  r.bytes = bytes;
  r.pos = 0;
  try {
    const v = r.value(0);
    return r.pos === bytes.length ? v : NOT_FAST;
  } catch {
    return NOT_FAST;
  } finally {
    r.bytes = EMPTY;
  }
}

const EMPTY = new Uint8Array(0);
/** Typed arrays up to this size are made on V8's heap (its typed_array_max_size_in_heap). */
const SMALL_ARRAY_BYTES = 64;
const SMALL_STAGE = new Uint8Array(SMALL_ARRAY_BYTES);
/** Floats are read through this: a DataView per message would cost more than the rest. */
const SCRATCH = new Uint8Array(8);
const SCRATCH_VIEW = new DataView(SCRATCH.buffer);

/**
 * Map keys are a handful of names repeated in every message: kept as the strings made for them
 * the first time (as msgpack's key cache does), rather than made and hashed again each time.
 */
const KEY_SLOTS = 256;
const keyBytes: (Uint8Array | undefined)[] = new Array(KEY_SLOTS).fill(undefined);
const keyStrings: string[] = new Array(KEY_SLOTS).fill("");

class Reader {
  bytes: Uint8Array = EMPTY;
  pos = 0;

  value(level: number): unknown {
    if (level > FAST_LEVELS) return NOT_FAST;
    const b = this.bytes;
    if (this.pos >= b.length) return NOT_FAST;
    const f = b[this.pos++]!;
    if (f < 0x80) return f;
    if (f < 0x90) return this.map(f - 0x80, level);
    if (f < 0xa0) return this.array(f - 0x90, level);
    if (f < 0xc0) return this.string(f - 0xa0);
    if (f >= 0xe0) return f - 0x100;
    let n: number;
    switch (f) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        n = this.u8();
        return this.bin(n);
      case 0xc5:
        n = this.u16();
        return this.bin(n);
      case 0xc6:
        n = this.u32();
        return this.bin(n);
      case 0xc7:
        n = this.u8();
        return this.ext(n);
      case 0xc8:
        n = this.u16();
        return this.ext(n);
      case 0xca:
        this.scratch(4);
        return SCRATCH_VIEW.getFloat32(0);
      case 0xcb:
        this.scratch(8);
        return SCRATCH_VIEW.getFloat64(0);
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xd0:
        n = this.u8();
        return n < 0x80 ? n : n - 0x100;
      case 0xd1:
        n = this.u16();
        return n < 0x8000 ? n : n - 0x10000;
      case 0xd2:
        return this.u32() | 0;
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        n = this.u8();
        return this.string(n);
      case 0xda:
        n = this.u16();
        return this.string(n);
      case 0xdc:
        n = this.u16();
        return this.array(n, level);
      case 0xde:
        n = this.u16();
        return this.map(n, level);
      default:
        // 64-bit integers, ext 32, str 32, array 32, map 32: the codec's.
        return NOT_FAST;
    }
  }

  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw new RangeError("truncated");
  }

  private scratch(n: number): void {
    this.need(n);
    const b = this.bytes;
    for (let i = 0; i < n; i++) SCRATCH[i] = b[this.pos + i]!;
    this.pos += n;
  }

  private u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }

  private u16(): number {
    this.need(2);
    const b = this.bytes;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  private u32(): number {
    this.need(4);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  }

  /** A plain Uint8Array view of the message, as the codec gives bytes (never a Node Buffer). */
  private bin(n: number): Uint8Array {
    this.need(n);
    const b = this.bytes;
    const out = new Uint8Array(b.buffer, b.byteOffset + this.pos, n);
    this.pos += n;
    return out;
  }

  private ext(size: number): unknown {
    this.need(1 + size);
    const b = this.bytes;
    if (b[this.pos] !== EXT_TYPED_ARRAY || size < 1) return NOT_FAST;
    const ctor = KINDS[b[this.pos + 1]!];
    const n = size - 1;
    if (ctor === undefined || n % ctor.BYTES_PER_ELEMENT !== 0) return NOT_FAST; // the codec says what is wrong
    // A copy into a fresh, aligned array of its own, as the codec makes (typed-arrays.ts).
    const count = n / ctor.BYTES_PER_ELEMENT;
    const out = new ctor(count);
    const from = b.byteOffset + this.pos + 2;
    if (n > SMALL_ARRAY_BYTES) {
      new Uint8Array(out.buffer, 0, n).set(new Uint8Array(b.buffer, from, n));
    } else if (n > 0) {
      // Small arrays live on V8's heap until their .buffer is asked for, which moves them off
      // it (the larger part of their cost): their bytes go through an aligned scratch instead.
      SMALL_STAGE.set(new Uint8Array(b.buffer, from, n));
      (out as Float64Array).set(new (ctor as Float64ArrayConstructor)(SMALL_STAGE.buffer, 0, count));
    }
    this.pos += 1 + size;
    return out;
  }

  /** ASCII text only; anything else is the codec's (its UTF-8 decoding decides). */
  private string(n: number): unknown {
    this.need(n);
    const b = this.bytes;
    const start = this.pos;
    for (let i = start; i < start + n; i++) if (b[i]! > 0x7f) return NOT_FAST;
    this.pos += n;
    if (n <= 16) {
      let s = "";
      for (let i = start; i < start + n; i++) s += String.fromCharCode(b[i]!);
      return s;
    }
    return LATIN1.decode(b.subarray(start, start + n));
  }

  /** A map key: short ASCII names come from the key cache. */
  private key(): unknown {
    const b = this.bytes;
    const f = b[this.pos];
    if (f === undefined || f < 0xa1 || f > 0xb0) return this.value(FAST_LEVELS); // not a short fixstr: as any value
    const n = f - 0xa0;
    const start = this.pos + 1;
    this.need(1 + n);
    let h = n;
    for (let i = start; i < start + n; i++) {
      const c = b[i]!;
      if (c > 0x7f) return NOT_FAST;
      h = (h * 31 + c) | 0;
    }
    const slot = h & (KEY_SLOTS - 1);
    const cached = keyBytes[slot];
    this.pos = start + n;
    if (cached !== undefined && cached.length === n) {
      let same = true;
      for (let i = 0; i < n; i++) {
        if (cached[i] !== b[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return keyStrings[slot];
    }
    let s = "";
    for (let i = start; i < start + n; i++) s += String.fromCharCode(b[i]!);
    keyBytes[slot] = b.slice(start, start + n);
    keyStrings[slot] = s;
    return s;
  }

  private array(n: number, level: number): unknown {
    // Every element takes at least a byte: a count past the end is refused before allocating.
    if (this.pos + n > this.bytes.length) return NOT_FAST;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) {
      const v = this.value(level + 1);
      if (v === NOT_FAST) return NOT_FAST;
      out[i] = v;
    }
    return out;
  }

  private map(n: number, level: number): unknown {
    if (this.pos + 2 * n > this.bytes.length) return NOT_FAST;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.key();
      // Number keys, and __proto__ (which msgpack refuses), are the codec's.
      if (typeof key !== "string" || key === "__proto__") return NOT_FAST;
      const v = this.value(level + 1);
      if (v === NOT_FAST) return NOT_FAST;
      out[key] = v;
    }
    return out;
  }
}

const LATIN1 = new TextDecoder("latin1");
const reader = new Reader();
