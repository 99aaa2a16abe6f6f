import { expect } from "chai";
import { encodeFrame, FrameDecoder, FrameError, MAX_FRAME_BYTES } from "../../src/executor/framing.ts";

describe("executor channel framing", () => {
  it("decodes frames split at any byte and several frames per chunk", () => {
    const values = [{ id: 1, s: "a\u0000b" }, { id: 2, s: "é".repeat(1000) }, { id: 3, s: "---END---\n" }];
    const bytes = Buffer.concat(values.map(encodeFrame));
    for (const step of [1, 3, 7, bytes.length]) {
      const d = new FrameDecoder();
      const got: unknown[] = [];
      for (let i = 0; i < bytes.length; i += step) got.push(...d.push(bytes.subarray(i, i + step)));
      expect(got).to.deep.equal(values);
    }
  });

  it("rejects oversized lengths and non-JSON bodies", () => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(() => new FrameDecoder().push(head)).to.throw(FrameError, /exceeds/);
    const bad = Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from("hello")]);
    expect(() => new FrameDecoder().push(bad)).to.throw(FrameError, /not JSON/);
  });
});
