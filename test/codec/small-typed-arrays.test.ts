import { expect } from "chai";
import { isDeepStrictEqual } from "node:util";
import { createCheckedCodec, createCodec } from "../../src/codec/codec.ts";
import { createSmallDecoder, createSmallEncoder, NOT_SMALL, SMALL_BYTES } from "../../src/codec/small.ts";
import { CodecError } from "../../src/errors/index.ts";

/**
 * The codec's one-pass path (src/codec/small.ts) must write the checked path's bytes exactly
 * (the walk, then msgpack with the extensions), decode to the same values of the same types, and
 * never accept bytes the checked path refuses: then a damaged message gets the checked path's
 * typed error whichever way it went. Random values with typed arrays of every kind, then random
 * damage.
 */
describe("codec one-pass path with typed arrays against the checked path (no NATS)", () => {
  const codec = createCodec();
  const checked = createCheckedCodec();
  const small = createSmallEncoder();
  const smallDecoder = createSmallDecoder();
  const KINDS = [Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array] as const;
  type Kind = (typeof KINDS)[number];
  const NUMS = [0, 1, -1, 31, 32, -32, -33, 127, 128, 255, 256, -128, -129, 65535, 65536, -32768, -32769, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53) + 1, 1.5, -0.25, NaN, Infinity, -Infinity, -0, 1e300];
  const LIMIT = 64 * 1024 * 1024;

  /** `n` elements of kind K, over a buffer with room on either side: maybe a subarray at an offset. */
  const typed = (K: Kind, n: number, rnd: () => number, view: number): ArrayBufferView => {
    const big = K === BigInt64Array || K === BigUint64Array;
    const pad = 1 + Math.floor(rnd() * 3);
    const whole = new (K as unknown as new (n: number) => { length: number; [i: number]: number | bigint; subarray(a: number, b: number): ArrayBufferView })(n + 2 * pad);
    for (let i = 0; i < whole.length; i++) whole[i] = big ? BigInt(Math.floor(rnd() * 2000) - (K === BigInt64Array ? 1000 : 0)) : rnd() * 400 - 200;
    if (view === 0) return whole as unknown as ArrayBufferView;
    if (view === 1) return whole.subarray(pad, pad + n);
    // A view at an odd byte offset of its buffer (for 1-byte kinds) or an offset not a multiple of 8.
    const per = K.BYTES_PER_ELEMENT;
    const buf = new ArrayBuffer((n + 3) * per + 8);
    const at = per === 1 ? 3 : per;
    const v = new (K as unknown as new (b: ArrayBuffer, o: number, n: number) => ArrayBufferView & { set(a: unknown): void })(buf, at, n);
    v.set((whole as { subarray(a: number, b: number): unknown }).subarray(pad, pad + n));
    return v;
  };

  const generator = (seed: number) => {
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const ri = (n: number) => Math.floor(rnd() * n);
    const counts = { typed: 0, other: 0 };
    /** Now and then something only the checked path takes: the message goes that way whole. */
    const other = (): unknown => {
      counts.other++;
      switch (ri(8)) {
        case 0:
          return new Map<unknown, unknown>([[1, typed(Float32Array, 2, rnd, 0)], ["k", "v"]]);
        case 1:
          return new Set([1, "x"]);
        case 2:
          return BigInt(ri(1e6)) * 1_000_000_000_000n;
        case 3:
          return new Date(ri(1e12));
        case 4:
          return new RangeError("out");
        case 5:
          return new DataView(new ArrayBuffer(ri(5)));
        case 6:
          return Buffer.from([ri(256), ri(256)]);
        default:
          return () => 1; // refused: a CodecError either way
      }
    };
    const gen = (d: number): unknown => {
      if (ri(60) === 0) return other();
      switch (ri(d > 3 ? 7 : 13)) {
        case 0:
          return NUMS[ri(NUMS.length)];
        case 1:
          return rnd() * 1e6 - 5e5;
        case 2: {
          const n = ri(4) === 0 ? ri(300) : ri(20);
          let s = "";
          for (let i = 0; i < n; i++) s += String.fromCharCode(ri(10) === 0 ? 0x80 + ri(500) : 32 + ri(90));
          return s;
        }
        case 3:
          return [true, false, null, undefined][ri(4)];
        case 4: {
          const u = new Uint8Array(ri(4) === 0 ? ri(400) : ri(10));
          for (let i = 0; i < u.length; i++) u[i] = ri(256);
          return ri(5) === 0 ? u.subarray(1) : u;
        }
        case 5:
        case 6: {
          const K = KINDS[ri(KINDS.length)]!;
          // Empty, around the fixext sizes (payload 1, 2, 4, 8, 16 bytes with the tag), ext 8, ext 16.
          const n = ri(4) === 0 ? ri(300) : ri(10);
          counts.typed++;
          return typed(K, n, rnd, ri(3));
        }
        case 7:
        case 8:
        case 9:
          return Array.from({ length: ri(4) === 0 ? ri(20) : ri(5) }, () => gen(d + 1));
        default: {
          const n = ri(4) === 0 ? ri(20) : ri(5);
          const o: Record<string, unknown> = ri(8) === 0 ? Object.create(null) : {};
          for (let i = 0; i < n; i++) o[ri(5) === 0 ? String(ri(100)) : `k${ri(50)}${ri(10) === 0 ? "é" : ""}`] = gen(d + 1);
          return o;
        }
      }
    };
    return { gen, ri, rnd, counts };
  };

  /** What decoding gives: the value, or the error's class and message. */
  const outcome = (decode: () => unknown): { value?: unknown; error?: { name: string; message: string; isCodecError: boolean } } => {
    try {
      return { value: decode() };
    } catch (err) {
      return { error: { name: (err as Error).name, message: (err as Error).message, isCodecError: err instanceof CodecError } };
    }
  };

  /** Both decoded the same: equal values of the same classes, typed arrays in buffers of their own. */
  const expectSame = (got: unknown, want: unknown, what: string) => {
    if (!isDeepStrictEqual(got, want)) expect.fail(`${what}: the one-pass path decoded another value`);
    const walk = (g: unknown, w: unknown) => {
      if (ArrayBuffer.isView(w)) {
        const gv = g as ArrayBufferView;
        if (Object.getPrototypeOf(gv) !== Object.getPrototypeOf(w)) expect.fail(`${what}: a ${gv.constructor.name} for a ${w.constructor.name}`);
        // Typed arrays: an aligned copy of their own, as decodeTypedArray makes it.
        if (Object.getPrototypeOf(w) !== Uint8Array.prototype && (gv.byteOffset !== w.byteOffset || gv.buffer.byteLength !== w.buffer.byteLength)) {
          expect.fail(`${what}: a ${w.constructor.name} at offset ${gv.byteOffset} of ${gv.buffer.byteLength} bytes, not ${w.byteOffset} of ${w.buffer.byteLength}`);
        }
      } else if (Array.isArray(w)) w.forEach((x, i) => walk((g as unknown[])[i], x));
      else if (w !== null && typeof w === "object") for (const k of Object.keys(w)) walk((g as Record<string, unknown>)[k], (w as Record<string, unknown>)[k]);
    };
    walk(got, want);
  };

  /** The message at an odd byte offset of a larger Node Buffer, as NATS may hand it over. */
  const misaligned = (bytes: Uint8Array): Buffer => {
    const backing = Buffer.alloc(bytes.length + 5);
    backing.set(bytes, 3);
    return backing.subarray(3, 3 + bytes.length);
  };

  it("encodes byte for byte as the checked path, decodes to equal values, and refuses damaged bytes the checked path refuses", () => {
    const { gen, ri, counts } = generator(11);
    let checkedOnly = 0;
    let refused = 0;
    let smallEncodes = 0;
    let smallDecodes = 0;
    let withTypedArrays = 0;
    let damagedAccepted = 0;
    let damagedRefused = 0;
    for (let it = 0; it < 6_000; it++) {
      counts.typed = 0;
      counts.other = 0;
      const v = gen(0);
      const value = ri(2) ? [0, v] : v;
      let ref: Uint8Array;
      try {
        ref = checked.encode(value);
      } catch (err) {
        // The one-pass path gives up on what the checked path refuses: the same error.
        refused++;
        expect(small.encode(value, LIMIT)).to.equal(undefined);
        expect(() => codec.encode(value)).to.throw(CodecError, (err as Error).message);
        continue;
      }
      const taken = small.encode(value, LIMIT);
      if (counts.other > 0) checkedOnly++;
      if (taken !== undefined) {
        smallEncodes++;
        if (counts.typed > 0) withTypedArrays++;
        if (Buffer.compare(Buffer.from(taken), Buffer.from(ref)) !== 0) expect.fail(`one-pass encode differs from the checked path's: ${Buffer.from(ref).toString("hex").slice(0, 160)}`);
      }
      const fast = codec.encode(value);
      expect(Buffer.compare(Buffer.from(fast), Buffer.from(ref))).to.equal(0);

      const want = checked.decode(Buffer.from(ref));
      if (smallDecoder.decode(misaligned(ref)) !== NOT_SMALL) smallDecodes++;
      expectSame(codec.decode(misaligned(ref)), want, "decode");
      expectSame(codec.decode(new Uint8Array(ref)), want, "decode of a plain Uint8Array");

      // Damage: random bytes overwritten, a tail zeroed, or the message cut short. Not with array
      // 32 and map 32 headers: msgpack allocates the length they claim (up to 2^32) before it
      // finds the message too short, which takes the checked path (and so both) a second apiece.
      const m = Buffer.from(ref);
      for (let k = 0; k < 1 + ri(3); k++) {
        if (ri(3) === 0) m.fill(0, ri(m.length));
        const x = ri(256);
        m[ri(m.length)] = x === 0xdd || x === 0xdf ? x - 1 : x;
      }
      const damaged = new Uint8Array(m.subarray(0, ri(4) === 0 ? ri(m.length + 1) : m.length));
      const slow = outcome(() => checked.decode(misaligned(damaged)));
      const got = outcome(() => codec.decode(misaligned(damaged)));
      if (slow.error) {
        damagedRefused++;
        expect(slow.error.isCodecError).to.equal(true);
        expect(got.error, `the one-pass path accepted bytes the checked path refuses: ${Buffer.from(damaged).toString("hex").slice(0, 160)}`).to.deep.equal(slow.error);
      } else {
        damagedAccepted++;
        expect(got.error).to.equal(undefined);
        expectSame(got.value, slow.value, "damaged decode");
      }
    }
    // The one-pass path must actually be taken, with typed arrays, or the test proves nothing.
    expect(smallEncodes).to.be.above(4_000);
    expect(withTypedArrays).to.be.above(1_500);
    expect(smallDecodes).to.be.above(4_000);
    expect(checkedOnly).to.be.above(300);
    expect(refused).to.be.above(20);
    expect(damagedRefused).to.be.above(500);
    expect(damagedAccepted).to.be.above(100);
  });

  it("writes every kind at every ext header size (fixext 1/2/4/8/16, ext 8, ext 16) as the checked path, and reads it back", () => {
    for (const K of KINDS) {
      const per = K.BYTES_PER_ELEMENT;
      for (const bytes of [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 64, 65, 248, 254, 255, 256, 1024, 65528]) {
        if (bytes % per !== 0) continue;
        const n = bytes / per;
        const rnd = (() => {
          let s = bytes + per;
          return () => (s = (s * 16807) % 2147483647) / 2147483647;
        })();
        for (let view = 0; view < 3; view++) {
          const a = typed(K, n, rnd, view);
          for (const value of [a, { x: a, y: [a, 1] }]) {
            const ref = checked.encode(value);
            expect(Buffer.compare(Buffer.from(codec.encode(value)), Buffer.from(ref)), `${K.name} of ${bytes} bytes`).to.equal(0);
            const fits = ref.length <= SMALL_BYTES;
            expect(small.encode(value, LIMIT) !== undefined, `${K.name} of ${bytes} bytes taken by the one-pass path`).to.equal(fits);
            expect(smallDecoder.decode(ref) !== NOT_SMALL, `${K.name} of ${bytes} bytes read by the one-pass path`).to.equal(fits);
            expectSame(codec.decode(misaligned(ref)), checked.decode(ref), `${K.name} of ${bytes} bytes`);
          }
        }
      }
    }
  });

  it("leaves large typed arrays (spliced in once by the checked path) and other views to the checked path", () => {
    class Floats extends Float32Array {}
    const detached = new Float64Array(4);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    const big = new Float32Array(SMALL_BYTES / 4);
    for (const value of [
      big,
      { big, x: 1 },
      new Int8Array(SMALL_BYTES - 4), // one byte over with its ext 16 header and tag
      new Floats([1, 2, 3]),
      new DataView(new ArrayBuffer(8)),
      Buffer.from([1, 2, 3]),
      [1, new Map([[1, new Float32Array(2)]])],
    ]) {
      expect(small.encode(value, LIMIT)).to.equal(undefined);
      const ref = checked.encode(value);
      expect(Buffer.compare(Buffer.from(codec.encode(value)), Buffer.from(ref))).to.equal(0);
      expectSame(codec.decode(ref), checked.decode(ref), "decode");
    }
    const exact = new Int8Array(SMALL_BYTES - 5); // exactly SMALL_BYTES with its header and tag
    expect(small.encode(exact, LIMIT)?.length).to.equal(SMALL_BYTES);
    expect(Buffer.compare(Buffer.from(codec.encode(exact)), Buffer.from(checked.encode(exact)))).to.equal(0);
    // A view of a detached buffer: the same CodecError either way.
    expect(small.encode({ a: detached }, LIMIT)).to.equal(undefined);
    let slow: unknown;
    try {
      checked.encode({ a: detached });
    } catch (err) {
      slow = err;
    }
    expect(slow).to.be.instanceOf(CodecError);
    expect(() => codec.encode({ a: detached })).to.throw(CodecError, (slow as Error).message);
  });

  it("refuses over a limit with the checked path's error", () => {
    const value = { obs: new Float32Array(100) };
    for (const bytes of [10, 200, 400, 411, 412, 413]) {
      const over = { bytes, name: "maxValueBytes" };
      const slow = outcome(() => checked.encode(value, over));
      const fast = outcome(() => codec.encode(value, over));
      expect(fast).to.deep.equal(slow);
    }
  });

  it("reads damaged typed array extensions as the checked path does: unknown tags, partial elements, truncation", () => {
    const cases: number[][] = [
      [0xd4, 0x01, 0x0a], // unknown tag 10
      [0xd4, 0x01, 0xff],
      [0xc7, 0x00, 0x01], // no tag at all
      [0xd6, 0x01, 0x06, 1, 2, 3], // Float32Array of 3 bytes
      [0xc7, 0x07, 0x01, 0x06, 1, 2, 3, 4, 5, 6], // Float32Array of 6 bytes
      [0xc7, 0x09, 0x01, 0x07, 1, 2, 3, 4, 5, 6, 7, 8], // truncated
      [0xd8, 0x01, 0x07], // truncated fixext 16
      [0xc8, 0x00], // truncated header
      [0xd5, 0x02, 0x00, 0x90], // another extension (a Map)
      [0xd4, 0xff, 0x00], // timestamp type with a 1-byte payload
      [0x92, 0xd4, 0x01, 0x00, 0xc1], // 0xc1 after a typed array
      [0x91, 0xd4, 0x01, 0x00, 0x00], // trailing byte
      [0xc4, 0x05, 1, 2], // truncated bin
      [0xca, 0x3f, 0x80, 0x00, 0x00], // float32 1
      [0xca, 0x3f, 0x80], // truncated float32
      [0xc9, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00], // ext 32 of an empty Int8Array
    ];
    for (const c of cases) {
      const bytes = Uint8Array.from(c);
      const slow = outcome(() => checked.decode(bytes));
      const fast = outcome(() => codec.decode(misaligned(bytes)));
      if (slow.error) expect(fast.error, Buffer.from(bytes).toString("hex")).to.deep.equal(slow.error);
      else expectSame(fast.value, slow.value, Buffer.from(bytes).toString("hex"));
    }
  });
});
