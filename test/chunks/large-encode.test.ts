import { expect } from "chai";
import { Encoder, ExtensionCodec } from "@msgpack/msgpack";
import { createCodec } from "../../src/codec/index.ts";
import { createBufferPool } from "../../src/chunks/store.ts";

const MB = 1024 * 1024;
const pattern = <T extends Float32Array | Float64Array | Int16Array>(a: T): T => {
  for (let i = 0; i < a.length; i++) a[i] = (i % 977) - 300;
  return a;
};

/**
 * The bytes msgpack itself writes for a value whose typed arrays are ext 1 payloads (tag, then
 * the raw bytes): what the codec's one-copy encoding of large typed arrays must reproduce.
 */
function reference(value: unknown): Uint8Array {
  const kinds = [Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array];
  const ext = new ExtensionCodec();
  const enc = () => new Encoder({ extensionCodec: ext, ignoreUndefined: true });
  ext.register({
    type: 1,
    encode: (v) => {
      const tag = kinds.findIndex((k) => Object.getPrototypeOf(v) === k.prototype);
      if (tag < 0 || !ArrayBuffer.isView(v)) return null;
      const out = new Uint8Array(1 + v.byteLength);
      out[0] = tag;
      out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), 1);
      return out;
    },
    decode: () => null,
  });
  ext.register({ type: 2, encode: (v) => (v instanceof Map ? enc().encode([...v]) : null), decode: () => null });
  ext.register({ type: 3, encode: (v) => (v instanceof Set ? enc().encode([...v]) : null), decode: () => null });
  return enc().encode(value);
}

describe("large values: encoding typed arrays with one copy (issue 14, part 3)", () => {
  const codec = createCodec({ maxPayload: 1024 * MB });
  const chunked = { bytes: 1024 * MB, name: "maxValueBytes" };

  it("writes exactly the bytes msgpack writes, for arrays at, under and over the size that is spliced", () => {
    const values: unknown[] = [
      [pattern(new Float32Array(4 * MB))],
      [0, pattern(new Float32Array(MB))],
      [pattern(new Float32Array(16384)), pattern(new Float32Array(16383)), new Int16Array(40_000).fill(-3), "tail"],
      [{ w: pattern(new Float64Array(70_000)), inMap: new Map([["k", pattern(new Float32Array(70_000))]]), inSet: new Set([new Float64Array(9_000)]) }, new BigInt64Array(9_000).fill(5n)],
      [new Uint8Array(200_000).fill(7), new Float64Array(new ArrayBuffer(800_008), 8, 100_000).fill(1.5), new Int8Array(65_535), new Int8Array(65_536)],
      [1, 2, "small"],
    ];
    for (const v of values) {
      const want = reference(v);
      for (const got of [codec.encode(v), codec.encode(v, chunked), codec.encode(v, chunked, (n) => new Uint8Array(n).fill(0xee))]) {
        expect(got.length).to.equal(want.length);
        expect(Buffer.compare(got, want)).to.equal(0);
      }
    }
  });

  it("decodes what it spliced to the same typed arrays, views included", () => {
    const x = pattern(new Float32Array(2 * MB));
    const y = pattern(new Int16Array(3 * MB));
    const [a, b, s] = codec.decode<[Float32Array, Int16Array, string]>(codec.encode([x, y, "s"], chunked));
    expect(a).to.be.instanceOf(Float32Array).and.deep.equal(x);
    expect(b).to.be.instanceOf(Int16Array).and.deep.equal(y);
    expect(s).to.equal("s");
  });

  it("copies the arrays: changing them after encode changes nothing sent", () => {
    const x = pattern(new Float32Array(MB));
    const bytes = codec.encode([x], chunked);
    x.fill(0);
    const [back] = codec.decode<[Float32Array]>(bytes);
    expect(back[1]).to.equal(-299);
  });

  it("reuses the buffer of a dropped value for the next large one, and keeps none it did not make", () => {
    const pool = createBufferPool();
    const first = pool.alloc(8 * MB);
    pool.give(first);
    const second = pool.alloc(6 * MB);
    expect(second.buffer).to.equal(first.buffer);
    expect(second.length).to.equal(6 * MB);
    // Taken: not handed out twice.
    expect(pool.alloc(6 * MB).buffer).to.not.equal(first.buffer);
    // Small values, and sizes the kept buffer is over twice of: fresh memory.
    pool.give(second);
    expect(pool.alloc(MB).buffer).to.not.equal(first.buffer);
    const big = pool.alloc(20 * MB);
    pool.give(big);
    expect(pool.alloc(5 * MB).buffer).to.equal(first.buffer);
    expect(pool.alloc(5 * MB).buffer).to.not.equal(big.buffer);
    // Bytes it did not make are never kept.
    const foreign = new Uint8Array(8 * MB);
    pool.give(foreign);
    expect(pool.alloc(8 * MB).buffer).to.not.equal(foreign.buffer);
    pool.clear();
    expect(pool.alloc(6 * MB).buffer).to.not.equal(first.buffer);
  });
});
