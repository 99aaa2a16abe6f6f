import { expect } from "chai";
import { createCodec } from "../../src/codec/index.ts";
import { CodecError, getServices, ServiceNotFoundError, type Services } from "../../src/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

/** `n` arrays inside each other around a number: n levels of nesting. */
const nest = (n: number): unknown => {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};
const depthOf = (v: unknown): number => (Array.isArray(v) ? 1 + depthOf(v[0]) : 0);

const sparse = (length: number): unknown[] => {
  const a: unknown[] = [];
  a.length = length;
  return a;
};

const timed = <T>(f: () => T): { ms: number; err: unknown } => {
  const t0 = performance.now();
  try {
    f();
    return { ms: performance.now() - t0, err: undefined };
  } catch (err) {
    return { ms: performance.now() - t0, err };
  }
};

class Echo {
  echo(v: unknown) {
    return v;
  }
  kind(v: unknown) {
    return v instanceof Error ? `${v.constructor.name}:${v.name}:${v.message}` : typeof v;
  }
  makeError() {
    const e = new RangeError("out of range", { cause: new Error("root cause") }) as RangeError & { code: string; limits: number[] };
    e.code = "E_RANGE";
    e.limits = [1, 2];
    return e;
  }
}

describe("codec bounds (issue 16, items 7 and 8)", () => {
  describe("work bounded by the payload limit", () => {
    const codec = createCodec({ maxPayload: 1024 * 1024 });

    it("refuses a sparse array of length 1e8 (and 1e9) in milliseconds, by its length", () => {
      for (const n of [1e8, 1e9]) {
        const { ms, err } = timed(() => codec.encode([sparse(n)]));
        expect(err).to.be.instanceOf(CodecError);
        expect((err as Error).message).to.contain(`an array of length ${n}`).and.contain("max_payload of 1048576 bytes");
        expect(ms).to.be.below(50);
      }
    });

    it("refuses a string longer than the limit before encoding it", () => {
      const s = "x".repeat(8 * 1024 * 1024);
      const { ms, err } = timed(() => codec.encode([s]));
      expect(err).to.be.instanceOf(CodecError);
      expect((err as Error).message).to.contain("a string of 8388608 characters");
      expect((err as CodecError).details).to.include({ maxPayload: 1024 * 1024 });
      expect(ms).to.be.below(20);
    });

    it("refuses Maps, Sets and typed arrays by their size, and many small values by their sum", () => {
      const small = createCodec({ maxPayload: 10_000 });
      expect(() => small.encode([new Float64Array(2_000)])).to.throw(CodecError, /Float64Array of 16000 bytes/);
      expect(() => small.encode([new Map(Array.from({ length: 6_000 }, (_, i) => [i, i]))])).to.throw(CodecError, /Map of 6000 entries/);
      expect(() => small.encode([new Set(Array.from({ length: 11_000 }, (_, i) => i))])).to.throw(CodecError, /Set of 11000 entries/);
      const many = Array.from({ length: 2_000 }, () => "y".repeat(1_000));
      expect(() => codec.encode([many])).to.throw(CodecError, /max_payload/);
    });

    it("still encodes what fits, up to the limit", () => {
      const fits = new Uint8Array(1024 * 1024 - 64);
      expect((codec.decode(codec.encode([fits])) as Uint8Array[])[0]).to.have.length(fits.length);
      expect(codec.decode(codec.encode([sparse(1000)]))).to.deep.equal([new Array(1000).fill(null)]);
    });

    it("reads a limit given as a function on every encode (a reconnect to another server)", () => {
      let limit = 1_000;
      const c = createCodec({ maxPayload: () => limit });
      expect(() => c.encode(["z".repeat(2_000)])).to.throw(CodecError);
      limit = 10_000;
      expect(c.decode(c.encode(["z".repeat(2_000)]))).to.deep.equal(["z".repeat(2_000)]);
    });

    it("without a limit, bounds work by the most any default nats-server accepts (64 MiB)", () => {
      const { ms, err } = timed(() => createCodec().encode([sparse(1e8)]));
      expect(err).to.be.instanceOf(CodecError);
      expect((err as Error).message).to.contain("67108864");
      expect(ms).to.be.below(50);
    });
  });

  describe("exact depth and cycles", () => {
    const codec = createCodec();

    it("an argument or result may nest exactly 100 levels; the message says so", () => {
      expect(depthOf(nest(100))).to.equal(100);
      expect(depthOf((codec.decode(codec.encode([nest(100)])) as unknown[])[0])).to.equal(100);
      const err = timed(() => codec.encode([nest(101)])).err as CodecError;
      expect(err).to.be.instanceOf(CodecError);
      expect(err.message).to.contain("deeper than 100 levels");
      // Maps and Sets count as levels too (they used to restart the count, then overflow the stack).
      let m: unknown = 0;
      for (let i = 0; i < 101; i++) m = i % 2 ? new Map([["k", m]]) : new Set([m]);
      expect(() => codec.encode([m])).to.throw(CodecError, /deeper than 100 levels/);
      let deep: unknown = 0;
      for (let i = 0; i < 50_000; i++) deep = new Map([["k", deep]]);
      expect(() => codec.encode([deep])).to.throw(CodecError, /deeper than 100 levels/);
    });

    it("tells a cycle from deep data", () => {
      const a: Record<string, unknown> = { n: 1 };
      a.self = { back: a };
      expect(() => codec.encode([a])).to.throw(CodecError, /cyclic/);
      const shared = { x: 1 };
      expect(codec.decode(codec.encode([[shared, shared]]))).to.deep.equal([[{ x: 1 }, { x: 1 }]]); // shared, not cyclic
    });

    it("names functions and symbols", () => {
      expect(() => codec.encode([{ f: function handler() {} }])).to.throw(CodecError, /functions cannot be sent.*handler/);
      expect(() => codec.encode([Symbol("s")])).to.throw(CodecError, /symbols cannot be sent/);
    });
  });

  describe("Error values", () => {
    const codec = createCodec();

    it("round-trip as Error instances with name, message, stack, cause and own fields", () => {
      const root = new Error("root cause");
      const e = new TypeError("bad input", { cause: root }) as TypeError & { code: string; meta: unknown };
      e.code = "E_BAD";
      e.meta = { at: [1, 2], when: new Date(0) };
      const back = (codec.decode(codec.encode([e])) as unknown[])[0] as typeof e;
      expect(back).to.be.instanceOf(TypeError);
      expect(back.name).to.equal("TypeError");
      expect(back.message).to.equal("bad input");
      expect(back.stack).to.equal(e.stack);
      expect(back.code).to.equal("E_BAD");
      expect(back.meta).to.deep.equal({ at: [1, 2], when: new Date(0) });
      expect(back.cause).to.be.instanceOf(Error);
      expect((back.cause as Error).message).to.equal("root cause");
      expect(Object.keys(back)).to.deep.equal(["code", "meta"]); // name, message, stack, cause stay non-enumerable
    });

    it("keeps custom names, AggregateError's errors and the library's own classes", () => {
      class QuotaError extends Error {
        override name = "QuotaError";
      }
      const q = codec.decode(codec.encode(new QuotaError("over quota"))) as Error;
      expect(q).to.be.instanceOf(Error);
      expect(q.name).to.equal("QuotaError");
      const agg = codec.decode(codec.encode(new AggregateError([new RangeError("r")], "several"))) as AggregateError;
      expect(agg).to.be.instanceOf(AggregateError);
      expect(agg.errors[0]).to.be.instanceOf(RangeError);
      const lib = codec.decode(codec.encode(new ServiceNotFoundError("gone", { details: { service: "s" } }))) as ServiceNotFoundError;
      expect(lib).to.be.instanceOf(ServiceNotFoundError);
      expect(lib.code).to.equal("SERVICE_NOT_FOUND");
      expect(lib.details).to.deep.equal({ service: "s" });
    });

    it("refuses an Error whose fields the wire cannot carry, with a CodecError", () => {
      const e = new Error("has a callback") as Error & { retry?: () => void };
      e.retry = () => {};
      expect(() => codec.encode([e])).to.throw(CodecError, /functions cannot be sent/);
    });

    it("refuses a malformed Error extension from the wire with a CodecError", () => {
      // ext 5 holding a bare integer, as a hostile peer could send it
      const bytes = Uint8Array.of(0xd4, 5, 0x01);
      expect(() => codec.decode(bytes)).to.throw(CodecError, /malformed Error value/);
    });
  });

  describe("over a real nats-server", () => {
    let services: Services;
    beforeEach(async () => {
      services = await getServices({ namespace: uniqueNamespace("codec"), servers: testUrl(), devServer: "never" });
    });
    afterEach(async () => {
      await services.reset();
      await services.close();
    });

    it("an Error argument arrives as an Error, and an Error result comes back as one", async () => {
      const h = await services.register("echo", Echo);
      expect(await h.kind(new SyntaxError("unexpected token"))).to.equal("SyntaxError:SyntaxError:unexpected token");
      const back = (await h.makeError()) as unknown as RangeError & { code: string; limits: number[] };
      expect(back).to.be.instanceOf(RangeError);
      expect(back.message).to.equal("out of range");
      expect(back.code).to.equal("E_RANGE");
      expect(back.limits).to.deep.equal([1, 2]);
      expect((back.cause as Error).message).to.equal("root cause");
      expect(back.stack).to.contain("makeError");
    });

    it("100 levels cross both ways; 101 fail before sending, with the exact limit in the message", async () => {
      const h = await services.register("echo", Echo);
      expect(depthOf(await h.echo(nest(100)))).to.equal(100);
      const err = await h.echo(nest(101)).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CodecError);
      expect((err as Error).message).to.contain("deeper than 100 levels");
    });

    it("a sparse array of length 2e9 fails with CodecError in milliseconds", async () => {
      const h = await services.register("echo", Echo);
      const t0 = performance.now();
      // Calls may carry up to maxValueBytes (1 GiB by default, in chunks): 2e9 nils are over it by length alone.
      const err = await h.echo(sparse(2e9)).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CodecError);
      expect(performance.now() - t0).to.be.below(100);
    });
  });
});
