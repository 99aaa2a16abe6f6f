import { expect } from "chai";
import { currentCall, withOptions } from "../../src/call/index.ts";
import { createLocalBus } from "../../src/connection/index.ts";
import { CallTimeoutError, CancelledError, RemoteError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

/** A plain class with async generator methods: they stream through any handle. */
class Generator {
  produced = 0;
  finallyAt: number[] = [];
  running = 0;

  async *tokens(prompt: string, n: number): AsyncGenerator<string> {
    const { metadata } = currentCall();
    for (let i = 0; i < n; i++) yield `${prompt}:${metadata.tag ?? "-"}:${i}`;
  }

  async *endless(): AsyncGenerator<number> {
    this.running++;
    try {
      for (let i = 0; ; i++) {
        this.produced++;
        yield i;
        if (i % 16 === 15) await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.running--;
      this.finallyAt.push(Date.now());
    }
  }

  async *failsAfter(n: number): AsyncGenerator<number> {
    for (let i = 0; i < n; i++) yield i;
    throw new RangeError(`failed after ${n}`);
  }

  ping(): string {
    return "pong";
  }
}

for (const backend of ["nats", "local"] as const) {
  describe(`streams (${backend})`, function () {
    this.timeout(30_000);
    let services: Services;
    let gen: Generator;

    before(async () => {
      services =
        backend === "nats"
          ? await getServices({ servers: testUrl(), namespace: uniqueNamespace("stream") })
          : await getServices({ backend: "local", localBus: createLocalBus(), namespace: uniqueNamespace("stream") });
      gen = new Generator();
      await services.registerInstance("gen", gen, { maxConcurrency: 1, maxPending: 16 });
    });
    after(() => services.close());

    it("an async generator method streams its items in order, with the call's context", async () => {
      const h = withOptions(await services.get<Generator>("gen"), { metadata: { tag: "x" } });
      const got: string[] = [];
      for await (const t of h.tokens("hi", 500)) got.push(t);
      expect(got).to.have.length(500);
      expect(got[0]).to.equal("hi:x:0");
      expect(got[499]).to.equal("hi:x:499");
    });

    it("break stops the generator on the host (its finally runs) within milliseconds", async () => {
      const h = await services.get<Generator>("gen");
      const before = gen.finallyAt.length;
      let t0 = 0;
      for await (const i of h.endless()) {
        if (i === 3) {
          t0 = Date.now();
          break;
        }
      }
      await until(() => gen.finallyAt.length === before + 1, 2_000, "the generator's finally");
      expect(gen.finallyAt.at(-1)! - t0).to.be.below(100);
      expect(gen.running).to.equal(0);
    });

    it("a slow consumer pauses the generator: the host runs at most a window ahead", async () => {
      const h = await services.get<Generator>("gen");
      const start = gen.produced;
      let consumed = 0;
      for await (const _ of h.endless()) {
        consumed++;
        await new Promise((r) => setTimeout(r, 2));
        if (consumed === 200) break;
      }
      await new Promise((r) => setTimeout(r, 100));
      expect(gen.produced - start - consumed).to.be.at.most(64 + 16);
    });

    it("an error thrown mid-stream arrives after the items before it, typed", async () => {
      const h = await services.get<Generator>("gen");
      const got: number[] = [];
      const err = await (async () => {
        for await (const i of h.failsAfter(5)) got.push(i);
      })().catch((e) => e);
      expect(got).to.deep.equal([0, 1, 2, 3, 4]);
      expect(err).to.be.instanceOf(RemoteError);
      expect(err.message).to.contain("failed after 5");
    });

    it("a stream counts as one running call against maxConcurrency until it ends", async () => {
      const h = await services.get<Generator>("gen");
      const it = h.endless()[Symbol.asyncIterator]();
      await it.next();
      let pinged = false;
      const ping = h.ping().then(() => (pinged = true));
      await new Promise((r) => setTimeout(r, 100));
      expect(pinged, "a call waits while the stream holds the only slot").to.equal(false);
      await it.return!();
      await ping;
      expect(pinged).to.equal(true);
    });

    it("the deadline applies to the whole stream", async () => {
      const h = withOptions(await services.get<Generator>("gen"), { timeoutMs: 300 });
      let n = 0;
      const err = await (async () => {
        for await (const _ of h.endless()) {
          n++;
          await new Promise((r) => setTimeout(r, 5));
        }
      })().catch((e) => e);
      expect(err).to.be.instanceOf(CallTimeoutError);
      expect(n).to.be.above(5);
      await until(() => gen.running === 0, 2_000, "the host to end the generator");
    });

    it("abort() ends the stream with CancelledError and the host's generator", async () => {
      const ac = new AbortController();
      const h = withOptions(await services.get<Generator>("gen"), { signal: ac.signal });
      const before = gen.finallyAt.length;
      const err = await (async () => {
        for await (const i of h.endless()) if (i === 10) ac.abort();
      })().catch((e) => e);
      expect(err).to.be.instanceOf(CancelledError);
      await until(() => gen.finallyAt.length === before + 1, 2_000, "the generator's finally");
    });

    it("awaiting a streaming call gives the stream; iterating a unary call says to await it", async () => {
      const h = await services.get<Generator>("gen");
      const s = await (h.tokens("a", 2) as unknown as Promise<AsyncIterable<string>>);
      const got: string[] = [];
      for await (const t of s) got.push(t);
      expect(got).to.deep.equal(["a:-:0", "a:-:1"]);
      const err = await (async () => {
        for await (const _ of h.ping() as unknown as AsyncIterable<unknown>);
      })().catch((e) => e);
      expect(err.message).to.match(/not a stream: await the call/);
    });
  });
}
