import { expect } from "chai";
import { createHash } from "node:crypto";
import { CallTimeoutError, CancelledError, CodecError, ConnectionLostError, RemoteError, getServices, withOptions, type Services } from "../../src/index.ts";
import { chunksOf, decodeRef, encodeRef } from "../../src/chunks/index.ts";
import { Tensors } from "../fixtures/replicas/tensors.ts";
import { killAllWorkers, startWorker } from "../helpers/processes.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

const MB = 1024 * 1024;

/** n float32s with a pattern whose every element is checked on the way back. */
function pattern(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < x.length; i++) x[i] = i % 977;
  return x;
}

function expectDoubled(y: unknown, n: number): void {
  expect(y).to.be.instanceOf(Float32Array);
  const f = y as Float32Array;
  expect(f.length).to.equal(n);
  for (let i = 0; i < n; i++) if (f[i] !== (i % 977) * 2) expect.fail(`element ${i} is ${f[i]}, expected ${(i % 977) * 2}`);
}

const stats = (s: Services) => chunksOf(s.connection).stats();
const nothingHeld = (s: Services, what: string) => until(() => stats(s).held === 0 && stats(s).pulling === 0, 10_000, `nothing stored after ${what}`);

describe("large values in chunks (issue 14, part 3)", function () {
  this.timeout(120_000);

  describe("a plain actor", () => {
    let services: Services;
    before(async () => {
      services = await getServices({ backend: "nats", namespace: uniqueNamespace("chunk"), servers: testUrl() });
    });
    after(async () => {
      await services.reset();
      await services.close();
    });

    it("takes a 64 MB Float32Array and returns a 64 MB one, typed and intact, and keeps nothing", async () => {
      const h = await services.register("t", Tensors);
      const before = stats(services).stored;
      const y = await h.double(pattern(16 * MB));
      expectDoubled(y, 16 * MB);
      // The argument (stored by the caller) and the result (stored by the host): one each.
      expect(stats(services).stored - before).to.equal(2);
      await nothingHeld(services, "success");
    });

    it("sends values up to the threshold inline and larger ones in chunks", async () => {
      const ns = uniqueNamespace("chunk");
      const threshold = 64 * 1024;
      const s = await getServices({ backend: "nats", namespace: ns, servers: testUrl(), chunkThresholdBytes: threshold });
      try {
        const h = await s.register("t", Tensors);
        const { codec } = s.connection;
        // The size of the encoded argument array, as the handle encodes it.
        const sizeOf = (n: number) => codec.encode([new Float32Array(n)]).length;
        // msgpack's ext header grows with the length: find the longest array that encodes within the threshold.
        let under = Math.floor(threshold / 4);
        while (sizeOf(under) > threshold) under--;
        expect(sizeOf(under)).to.be.at.most(threshold).and.above(threshold - 8);
        expect(sizeOf(under + 1)).to.be.above(threshold);
        let stored = stats(s).stored;
        expect(await h.describe(new Float32Array(under))).to.deep.include({ type: "Float32Array", length: under });
        expect(stats(s).stored, "a value of exactly the threshold goes inline").to.equal(stored);
        expect(await h.describe(new Float32Array(under + 1))).to.deep.include({ type: "Float32Array", length: under + 1 });
        expect(stats(s).stored - stored, "one float more goes in chunks").to.equal(1);
        stored = stats(s).stored;
        // A result just over the threshold comes back in chunks too; the argument stays inline.
        expect(await h.make(under + 1)).to.be.instanceOf(Float32Array).with.length(under + 1);
        expect(stats(s).stored - stored).to.equal(1);
        await nothingHeld(s, "threshold calls");
      } finally {
        await s.reset();
        await s.close();
      }
    });

    it("frees stored arguments when the call times out or is cancelled", async () => {
      const h = await services.register("t2", Tensors);
      const big = pattern(4 * MB);
      // Times out: the method sleeps past the call's deadline with a large argument.
      const timed = await withOptions(h, { timeoutMs: 300 }).sleep(2_000, big).catch((e: unknown) => e);
      expect(timed).to.be.instanceOf(CallTimeoutError);
      await nothingHeld(services, "a timeout");

      // Cancelled by its caller mid-call.
      const ac = new AbortController();
      const p = withOptions(h, { signal: ac.signal }).sleep(2_000, big).catch((e: unknown) => e);
      await until(() => stats(services).held > 0, 5_000, "the argument stored");
      setTimeout(() => ac.abort(), 50);
      expect(await p).to.be.instanceOf(CancelledError);
      await nothingHeld(services, "a cancel");
    });

    it("a failing method with a large argument answers its error and keeps nothing", async () => {
      class Picky {
        async take(x: Float32Array): Promise<number> {
          throw new RangeError(`refused ${x.length}`);
        }
      }
      const h = await services.register("picky", Picky);
      const err = await h.take(pattern(4 * MB)).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(RemoteError);
      expect((err as RemoteError).message).to.contain(`refused ${4 * MB}`);
      await nothingHeld(services, "a failure");
    });

    it("refuses values over maxValueBytes with a CodecError naming the limit, both ways", async () => {
      const ns = uniqueNamespace("chunk");
      const s = await getServices({ backend: "nats", namespace: ns, servers: testUrl(), maxValueBytes: 2 * MB });
      try {
        const h = await s.register("t", Tensors);
        const err: any = await h.describe(new Float32Array(MB)).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(CodecError);
        expect(err.message).to.contain("maxValueBytes").and.to.contain(String(2 * MB));
        const back: any = await h.make(MB).catch((e: unknown) => e);
        expect(back).to.be.instanceOf(CodecError);
        expect(back.message).to.contain("maxValueBytes");
        expect(await h.describe(new Float32Array(MB / 4))).to.deep.include({ length: MB / 4 });
        await nothingHeld(s, "refusals");
      } finally {
        await s.reset();
        await s.close();
      }
    });
  });

  describe("pulling a value", () => {
    let services: Services;
    before(async () => {
      services = await getServices({ backend: "nats", namespace: uniqueNamespace("chunk"), servers: testUrl() });
    });
    after(async () => {
      await services.close();
    });

    /** A sender that answers chunk requests as `answer` says, and the ref a receiver would get. */
    const fakeSender = (bytes: Uint8Array, chunkSize: number, answer: (index: number, chunk: Uint8Array) => Uint8Array, digestOf = bytes) => {
      const { transport } = services.connection;
      const subject = `ab.${uniqueNamespace("fake")}.chunk.x`;
      const sub = transport.subscribe(subject, (msg) => {
        const [, i] = services.connection.codec.decode<[string, number]>(msg.data);
        if (i === undefined) return; // a release
        if (i === -1) return msg.respond(createHash("sha256").update(digestOf).digest()); // the digest, once all chunks are in
        msg.respond(answer(i, bytes.subarray(i * chunkSize, (i + 1) * chunkSize)));
      });
      return { sub, ref: encodeRef({ subject, id: "v", total: bytes.length, chunkSize }) };
    };
    const resolve = (ref: Uint8Array, ms = 5_000) => chunksOf(services.connection).resolve(ref, Date.now() + ms, undefined, "the test value");
    const bytes = new Uint8Array(300_000).map((_, i) => i & 0xff);

    it("assembles a value from its chunks", async () => {
      const { sub, ref } = fakeSender(bytes, 64 * 1024, (_i, c) => c);
      await services.connection.transport.flush();
      expect(Buffer.compare(await resolve(ref), bytes)).to.equal(0);
      sub.unsubscribe();
    });

    it("fails with a CodecError on a digest mismatch", async () => {
      const other = bytes.slice();
      other[12345] ^= 1;
      const { sub, ref } = fakeSender(bytes, 64 * 1024, (_i, c) => c, other);
      await services.connection.transport.flush();
      const err: any = await resolve(ref).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CodecError);
      expect(err.message).to.contain("digest");
      expect(stats(services).pulling).to.equal(0);
      sub.unsubscribe();
    });

    it("fails with a CodecError on a truncated chunk", async () => {
      const { sub, ref } = fakeSender(bytes, 64 * 1024, (i, c) => (i === 2 ? c.subarray(0, 100) : c));
      await services.connection.transport.flush();
      const err: any = await resolve(ref).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CodecError);
      expect(err.message).to.contain("truncated");
      expect(stats(services).pulling).to.equal(0);
      sub.unsubscribe();
    });

    it("fails with a CodecError when the sender no longer holds the value", async () => {
      const { sub, ref } = fakeSender(bytes, 64 * 1024, () => new Uint8Array(0));
      await services.connection.transport.flush();
      const err: any = await resolve(ref).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CodecError);
      expect(err.message).to.contain("no longer held");
      sub.unsubscribe();
    });

    it("fails with ConnectionLostError when nobody holds the subject, and CallTimeoutError at the deadline", async () => {
      const gone = fakeSender(bytes, 64 * 1024, (_i, c) => c);
      gone.sub.unsubscribe();
      await services.connection.transport.flush();
      expect(await resolve(gone.ref).catch((e: unknown) => e)).to.be.instanceOf(ConnectionLostError);
      // A sender that hears but never answers: the pull runs into the call's deadline.
      const mute = fakeSender(bytes, 64 * 1024, (_i, c) => c);
      mute.sub.unsubscribe();
      const { subject } = decodeRef(mute.ref);
      const deaf = services.connection.transport.subscribe(subject, () => {});
      await services.connection.transport.flush();
      const err = await resolve(mute.ref, 300).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CallTimeoutError);
      expect(stats(services).pulling).to.equal(0);
      deaf.unsubscribe();
    });
  });

  describe("a sender killed mid-pull", () => {
    after(killAllWorkers);

    it("frees the receiver's partial value and fails the call with ConnectionLostError", async () => {
      const ns = uniqueNamespace("chunk");
      const w = startWorker("host-tensors", { url: testUrl(), namespace: ns });
      await w.next();
      const s = await getServices({ backend: "nats", namespace: ns, servers: testUrl() });
      try {
        const h = await s.get<Tensors>("tensors");
        // 128 MB: long enough to pull that the kill lands mid-way.
        const p = withOptions(h, { timeoutMs: 60_000 }).make(32 * MB).catch((e: unknown) => e);
        await until(() => stats(s).pulling > 0, 30_000, "the result being pulled");
        w.child.kill("SIGKILL");
        const err = await p;
        expect(err).to.be.instanceOf(ConnectionLostError);
        expect(stats(s).pulling, "partial value freed").to.equal(0);
        expect(stats(s).pullingBytes).to.equal(0);
      } finally {
        await s.close();
      }
    });
  });

  describe("a replicated service", function () {
    const ns = uniqueNamespace("chunksvc");
    let services: Services;
    let svc: any;
    before(async () => {
      services = await getServices({ backend: "nats", namespace: ns, servers: testUrl() });
      svc = await Tensors.options({ services, numReplicas: 3, procs: 1 }).asService();
    });
    after(async () => {
      await svc?.shutdown();
      await services?.close();
    });

    it("routes a 64 MB argument in and a 64 MB result out", async () => {
      const y = await svc.double(pattern(16 * MB));
      expectDoubled(y, 16 * MB);
      await nothingHeld(services, "a routed call");
    });

    it("fans a 32 MB argument out to 3 replicas, encoded and stored once", async () => {
      const before = stats(services).stored;
      const x = pattern(8 * MB);
      const results = await svc.describe.fanout(x);
      expect(results).to.have.length(3);
      for (const r of results) expect(r).to.deep.equal(await Tensors.prototype.describe(x));
      expect(stats(services).stored - before).to.equal(1);
      await nothingHeld(services, "a fanout");
    });

    it("carries large values in a session's calls", async () => {
      const got = await svc.session(async (s: any) => {
        expect(await s.keep(pattern(4 * MB))).to.equal(4 * MB);
        return s.kept();
      });
      expect(got).to.be.instanceOf(Float32Array).with.length(4 * MB);
      expect((got as Float32Array)[977 + 3]).to.equal(3);
      await nothingHeld(services, "a session");
    });
  });
});
