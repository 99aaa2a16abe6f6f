import { expect } from "chai";
import { isDeepStrictEqual } from "node:util";
import { createCodec } from "../../src/codec/index.ts";
import { decodeFast, FastWire, NOT_FAST } from "../../src/inference/wire.ts";

/**
 * The inference hot path's own encoder and decoder (src/inference/wire.ts) must write the codec's
 * bytes exactly and never accept what the codec refuses: random values, then random damage.
 */
describe("inference wire fast path against the codec (no NATS)", () => {
  const codec = createCodec();
  const KINDS = [Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array] as const;
  const NUMS = [0, 1, -1, 31, 32, -32, -33, 127, 128, 255, 256, -128, -129, 65535, 65536, -32768, -32769, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53) + 1, 1.5, -0.25, NaN, Infinity, -Infinity, -0, 1e300];

  const generator = (seed: number) => {
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const ri = (n: number) => Math.floor(rnd() * n);
    const gen = (d: number): unknown => {
      switch (ri(d > 3 ? 6 : 12)) {
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
          return u;
        }
        case 5: {
          const K = KINDS[ri(KINDS.length)]!;
          const n = ri(3) === 0 ? ri(100) : ri(6);
          const big = K === BigInt64Array || K === BigUint64Array;
          const buf = new (K as unknown as new (n: number) => { length: number; [i: number]: number | bigint; subarray(a: number, b: number): unknown })(n + 2);
          for (let i = 0; i < buf.length; i++) buf[i] = big ? BigInt(ri(1000)) : rnd() * 200 - 100;
          return ri(2) ? buf.subarray(1, n + 1) : buf;
        }
        case 6:
        case 7:
        case 8:
          return Array.from({ length: ri(3) === 0 ? ri(40) : ri(5) }, () => gen(d + 1));
        default: {
          const n = ri(3) === 0 ? ri(30) : ri(5);
          const o: Record<string, unknown> = ri(8) === 0 ? Object.create(null) : {};
          for (let i = 0; i < n; i++) o[ri(5) === 0 ? String(ri(100)) : `k${ri(50)}${ri(10) === 0 ? "é" : ""}`] = gen(d + 1);
          return o;
        }
      }
    };
    return { gen, ri };
  };

  it("encodes byte for byte as the codec, decodes to equal values, and refuses damaged bytes the codec refuses", () => {
    const w = new FastWire();
    const { gen, ri } = generator(7);
    let fastEncodes = 0;
    let fastDecodes = 0;
    for (let it = 0; it < 5_000; it++) {
      const v = gen(0);
      let ref: Uint8Array;
      try {
        ref = codec.encode([0, v]);
      } catch {
        continue;
      }
      const f = w.encode([0], v, 1 << 20);
      if (f) {
        fastEncodes++;
        if (Buffer.compare(Buffer.from(f), Buffer.from(ref)) !== 0) expect.fail(`fast encode differs from the codec's: ${Buffer.from(ref).toString("hex").slice(0, 120)}`);
      }
      const d = decodeFast(Buffer.from(ref));
      if (d !== NOT_FAST) {
        fastDecodes++;
        expect(isDeepStrictEqual(d, codec.decode(Buffer.from(ref))), "decode").to.equal(true);
      }
      const m = Buffer.from(ref);
      for (let k = 0; k < 1 + ri(3); k++) {
        if (ri(3) === 0) m.fill(0, ri(m.length));
        m[ri(m.length)] = ri(256);
      }
      const damaged = Buffer.from(m.subarray(0, ri(4) === 0 ? ri(m.length + 1) : m.length));
      let expected: unknown;
      let refused = false;
      try {
        expected = codec.decode(Buffer.from(damaged));
      } catch {
        refused = true;
      }
      const got = decodeFast(damaged);
      if (got === NOT_FAST) continue;
      expect(refused, `the fast path accepted bytes the codec refuses: ${damaged.toString("hex").slice(0, 120)}`).to.equal(false);
      expect(isDeepStrictEqual(got, expected)).to.equal(true);
    }
    // The fast path must actually be taken, or the test proves nothing.
    expect(fastEncodes).to.be.above(1_000);
    expect(fastDecodes).to.be.above(1_000);
  });
});
