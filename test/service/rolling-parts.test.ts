import { expect } from "chai";
import { CodecError } from "../../src/errors/index.ts";
import { encodeMinVersion, parseMinVersion, parseRolling } from "../../src/call/index.ts";
import { createCodec } from "../../src/codec/index.ts";
import { combineOkReplies, encodeOk, unwrapReply } from "../../src/reply/index.ts";
import { reportVersions } from "../../src/service/replica-version.ts";

describe("rolling updates and versions, the parts without NATS", () => {
  class Versioned {
    version = 1;
    #secret = 0;
    bump() {
      this.#secret++;
      return ++this.version;
    }
    async bumpLater() {
      await new Promise((r) => setTimeout(r, 5));
      return ++this.version;
    }
    async failAfterBump() {
      this.version = 10;
      throw new Error("failed after the bump");
    }
    read() {
      return this.version;
    }
  }

  it("reports the version at start and after each call that changed it (sync, async, thrown), before the caller sees the result", async () => {
    const seen: (number | null)[] = [];
    const v = new Versioned();
    expect(reportVersions(v, (x) => seen.push(x))).to.equal(true);
    expect(seen).to.deep.equal([1]);
    expect(v.bump()).to.equal(2); // private fields still work: `this` is the instance
    expect(seen).to.deep.equal([1, 2]);
    v.read();
    expect(seen, "unchanged: nothing sent").to.deep.equal([1, 2]);
    const p = v.bumpLater();
    let reportedFirst = false;
    await p.then(() => (reportedFirst = seen.length === 3));
    expect(reportedFirst, "reported before a later reaction to the call's promise runs").to.equal(true);
    await v.failAfterBump().catch(() => {});
    expect(seen).to.deep.equal([1, 2, 3, 10]);
  });

  it("reports null for a non-numeric version, leaves classes without one untouched, and never throws into the call", () => {
    const seen: (number | null)[] = [];
    const odd = { version: "v1" as unknown, set(x: unknown) { this.version = x; } };
    reportVersions(odd, (x) => seen.push(x));
    odd.set(4);
    expect(seen).to.deep.equal([null, 4]);
    const plain = { f: () => 1 };
    const f = plain.f;
    expect(reportVersions(plain, () => seen.push(-1))).to.equal(false);
    expect(plain.f).to.equal(f);
    const broken = { version: 0, g() { this.version = 1; return "ok"; } };
    reportVersions(broken, () => { throw new Error("connection closed"); });
    expect(broken.g()).to.equal("ok");
  });

  it("Ab-Min-Version: numbers round-trip, absence is undefined, anything else is a CodecError", () => {
    for (const v of [0, 7, -3, 2.5, 1e21]) expect(parseMinVersion(encodeMinVersion(v))).to.equal(v);
    expect(parseMinVersion("")).to.equal(undefined);
    for (const bad of ["seven", "NaN", "Infinity", "1".repeat(40)]) expect(() => parseMinVersion(bad)).to.throw(CodecError);
  });

  it("Ab-Rolling: a count of replicas, or a CodecError", () => {
    expect(parseRolling("")).to.equal(undefined);
    expect(parseRolling("2")).to.deep.equal({ maxUnavailable: 2 });
    for (const bad of ["0", "-1", "1.5", "x", "65536"]) expect(() => parseRolling(bad)).to.throw(CodecError);
  });

  it("puts replicas' [0, result] replies together as [0, [results]] without decoding them, for any count", () => {
    const codec = createCodec();
    for (const n of [0, 1, 3, 15, 16, 300]) {
      const values = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? { v: i, w: Float32Array.of(i, 0.5) } : i % 3 === 1 ? `r${i}` : [i, null]));
      const combined = combineOkReplies(values.map((v) => encodeOk(codec, v)));
      expect(unwrapReply(codec, combined)).to.deep.equal(values);
    }
    expect(() => combineOkReplies([codec.encode([1, { code: "REMOTE" }])])).to.throw(CodecError);
  });
});
