import { expect } from "chai";
import { createCodec } from "../../src/codec/index.ts";
import { stack, TensorRecordError, unstack, type TensorRecord } from "../../src/inference/index.ts";

describe("tensor records: stack / unstack", () => {
  const records: TensorRecord[] = [0, 1, 2].map((i) => ({
    observation: new Float32Array([i, i + 0.5, i + 0.25, -i]),
    pixels: { data: new Uint8Array([i, i + 1, i + 2, i + 3, i + 4, i + 5]), shape: [2, 3] },
    step: { data: new BigInt64Array([BigInt(i) * 10n ** 12n]), shape: [] },
  }));

  it("stacks into one contiguous typed array per key with a leading batch dimension", () => {
    const b = stack(records);
    expect(b.batchSize).to.equal(3);
    expect(b.data.observation).to.be.instanceOf(Float32Array);
    expect([...(b.data.observation as Float32Array)]).to.deep.equal([0, 0.5, 0.25, -0, 1, 1.5, 1.25, -1, 2, 2.5, 2.25, -2]);
    expect(b.shapes).to.deep.equal({ observation: [3, 4], pixels: [3, 2, 3], step: [3] });
    expect(b.data.pixels).to.be.instanceOf(Uint8Array);
    expect(b.data.step).to.be.instanceOf(BigInt64Array);
    expect(b.data.observation!.buffer).to.not.equal((records[0]!.observation as Float32Array).buffer); // a copy, not a view of an input
  });

  it("round-trips: unstack(stack(records)) equals the records", () => {
    expect(unstack(stack(records))).to.deep.equal(records);
  });

  it("round-trips through the wire codec (what NatsTransport sends)", () => {
    const codec = createCodec();
    const b = stack(records);
    const back = codec.decode<typeof b>(codec.encode(b));
    expect(back.data.observation).to.be.instanceOf(Float32Array);
    expect(unstack(back)).to.deep.equal(records);
  });

  it("unstack returns views into the batch (no copy) and cuts keys without a shape evenly", () => {
    const action = new Float32Array([1, 2, 3, 4, 5, 6]);
    const items = unstack({ batchSize: 3, data: { action } });
    expect(items.map((r) => [...(r.action as Float32Array)])).to.deep.equal([[1, 2], [3, 4], [5, 6]]);
    expect((items[1]!.action as Float32Array).buffer).to.equal(action.buffer);
  });

  it("unstack takes the batch size from shapes when batchSize is absent", () => {
    const items = unstack({ data: { q: new Float64Array([1, 2, 3, 4]) }, shapes: { q: [2, 2] } });
    expect(items).to.have.length(2);
    expect(items[1]).to.deep.equal({ q: new Float64Array([3, 4]) });
  });

  it("stack of no records is an empty batch, and back", () => {
    expect(stack([])).to.deep.equal({ batchSize: 0, data: {}, shapes: {} });
    expect(unstack({ batchSize: 0, data: {} })).to.deep.equal([]);
  });

  it("names the key and record when dtypes, shapes or keys disagree", () => {
    expect(() => stack([{ x: new Float32Array(2) }, { x: new Float64Array(2) }])).to.throw(TensorRecordError, /key "x" is Float32Array in record 0 but Float64Array in record 1/);
    expect(() => stack([{ x: new Float32Array(2) }, { x: new Float32Array(3) }])).to.throw(TensorRecordError, /shape \[2\] in record 0 but \[3\] in record 1/);
    expect(() => stack([{ x: new Float32Array(2) }, { y: new Float32Array(2) }])).to.throw(TensorRecordError, /record 1, key "x"/);
    expect(() => stack([{ x: new Float32Array(2) }, { x: new Float32Array(2), y: new Float32Array(1) }])).to.throw(TensorRecordError, /extra: y/);
    expect(() => stack([{ x: [1, 2] as unknown as Float32Array }])).to.throw(TensorRecordError, /plain array; use a typed array/);
    expect(() => stack([{ x: { data: new Float32Array(5), shape: [2, 2] } }])).to.throw(TensorRecordError, /holds 4 elements but data has 5/);
  });

  it("refuses model outputs that do not say or fit the batch size", () => {
    expect(() => unstack({ data: { a: new Float32Array(4) } })).to.throw(TensorRecordError, /cannot tell the batch size/);
    expect(() => unstack({ batchSize: 3, data: { a: new Float32Array(4) } })).to.throw(TensorRecordError, /not a multiple of the batch size 3/);
    expect(() => unstack({ batchSize: 2, data: { a: new Float32Array(4) }, shapes: { a: [4] } })).to.throw(TensorRecordError, /leading dimension 4 but the batch has 2/);
  });
});
