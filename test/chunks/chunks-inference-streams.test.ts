import { expect } from "chai";
import { fileURLToPath } from "node:url";
import { chunksOf, configureChunks, type ChunkSettings } from "../../src/chunks/index.ts";
import { connectBus, startNatsServer, type BusConnection, type NatsServerProcess } from "../../src/connection/index.ts";
import { CallTimeoutError, CancelledError, CodecError, ConnectionLostError, RemoteError, ReplicaCrashedError, getServices, withOptions, type Services } from "../../src/index.ts";
import { InferenceServer, NatsTransport } from "../../src/inference/index.ts";
import { killAllWorkers, startWorker } from "../helpers/processes.ts";
import { uniqueNamespace, until } from "../helpers/nats.ts";

/**
 * Issue 14, part 3, for the paths test/chunks/chunks.test.ts does not cover: inference requests
 * and results, and stream items. A server of its own with a small max_payload (256 KiB: values
 * over 128 KiB go in chunks of ~252 KiB) keeps the values, and so the tests, small.
 */
const MAX_PAYLOAD = 256 * 1024;
const MB = 1024 * 1024;
const SENDER = fileURLToPath(new URL("./workers/large-sender.ts", import.meta.url));

/** n float32s with a pattern whose every element is checked. */
function pattern(n: number, k = 0): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (i + k) % 977;
  return x;
}

function expectPattern(y: unknown, n: number, k = 0, factor = 1): void {
  expect(y).to.be.instanceOf(Float32Array);
  const f = y as Float32Array;
  expect(f.length).to.equal(n);
  for (let i = 0; i < n; i++) if (f[i] !== ((i + k) % 977) * factor) expect.fail(`element ${i} is ${f[i]}, expected ${((i + k) % 977) * factor}`);
}

const stats = (c: BusConnection) => chunksOf(c).stats();
const nothingHeld = (conns: BusConnection[], what: string, ms = 5_000) =>
  until(() => conns.every((c) => stats(c).held === 0 && stats(c).pulling === 0), ms, `nothing stored after ${what}`);

/**
 * Counts the chunk requests of a namespace and runs `at` on the nth (a sender killed mid-value),
 * then stops listening: the receiver's next requests find nobody, as after a real death.
 */
function onChunkRequest(conn: BusConnection, ns: string, n: number, at: () => void) {
  let seen = 0;
  const sub = conn.transport.subscribe(`ab.${ns}.chunk.>`, (msg) => {
    if (!msg.reply || ++seen !== n) return;
    sub.unsubscribe();
    at();
  });
  return sub;
}

/** A receiver that pulls one chunk at a time and gives a silent sender up quickly: a kill lands mid-value. */
function slowReceiver(c: BusConnection): void {
  const s = chunksOf(c).settings as ChunkSettings;
  s.window = 1;
  s.pullTimeoutMs = 1_500;
}

describe("large values in chunks: inference and streams (issue 14, part 3)", function () {
  this.timeout(30_000);
  let nats: NatsServerProcess;
  before(async () => {
    nats = await startNatsServer({ config: `max_payload: ${MAX_PAYLOAD}\n` });
  });
  after(async () => {
    await killAllWorkers();
    await nats?.stop();
  });

  describe("inference over NATS", () => {
    let ns: string;
    let serverConn: BusConnection;
    let clientConn: BusConnection;
    const cleanup: (() => Promise<unknown>)[] = [];
    beforeEach(async () => {
      ns = uniqueNamespace("chinf");
      serverConn = await connectBus({ servers: nats.url });
      clientConn = await connectBus({ servers: nats.url });
    });
    afterEach(async () => {
      for (const c of cleanup.splice(0).reverse()) await c();
      await Promise.all([serverConn.close(), clientConn.close()]);
    });

    type Obs = { observation: Float32Array };
    type Act = { action: Float32Array; policyVersion?: number };
    /** A server whose model doubles each observation, items passed as they arrived. */
    const serve = async (model: (items: Obs[]) => Promise<Act[]> | Act[]) => {
      const t = new NatsTransport<Obs, Act>({ connection: serverConn, namespace: ns, name: "policy" });
      const s = new InferenceServer(model, t, { collate: (items: Obs[]) => items }).start();
      cleanup.push(() => t.close(), () => s.shutdown());
      await s.ready();
      const client = new NatsTransport<Obs, Act>({ connection: clientConn, namespace: ns, name: "policy", timeoutMs: 20_000 });
      cleanup.push(() => client.close());
      return { server: s, client };
    };
    const doubled = (seen: unknown[]) => (items: Obs[]) =>
      items.map((it) => {
        seen.push(it.observation);
        return { action: it.observation.map((v) => v * 2) };
      });

    it("takes a 4 MB Float32Array observation and returns a 4 MB action, typed and intact, and keeps nothing", async () => {
      const seen: unknown[] = [];
      const { client } = await serve(doubled(seen));
      const before = { client: stats(clientConn).stored, server: stats(serverConn).stored };
      const r = await client.submit({ observation: pattern(MB) });
      // The model saw the same value: a Float32Array, every element in place.
      expect(seen).to.have.length(1);
      expectPattern(seen[0], MB);
      expectPattern(r.action, MB, 0, 2);
      expect(r.policyVersion).to.equal(0);
      // The request was held by the client, the result by the server: one each.
      expect(stats(clientConn).stored - before.client).to.equal(1);
      expect(stats(serverConn).stored - before.server).to.equal(1);
      await nothingHeld([clientConn, serverConn], "a round trip");
    });

    it("sends a large request of a tick apart and stores nothing for the small ones beside it", async () => {
      const seen: unknown[] = [];
      const { client } = await serve(doubled(seen));
      const before = { client: stats(clientConn).stored, server: stats(serverConn).stored };
      // Large and small in one tick: the large one travels apart, the small ones as before.
      const calls = [client.submit({ observation: pattern(8) }), client.submit({ observation: pattern(300_000) }), client.submit({ observation: pattern(8, 1) })];
      const [a, b, c] = await Promise.all(calls);
      expectPattern(a!.action, 8, 0, 2);
      expectPattern(b!.action, 300_000, 0, 2);
      expectPattern(c!.action, 8, 1, 2);
      expect(stats(clientConn).stored - before.client).to.equal(1);
      expect(stats(serverConn).stored - before.server).to.equal(1);
      await nothingHeld([clientConn, serverConn], "mixed calls");
    });

    it("fails a request with a large observation whose model throws, and keeps nothing", async () => {
      const { client } = await serve(() => {
        throw new RangeError("refused");
      });
      const err = await client.submit({ observation: pattern(MB) }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(RemoteError);
      expect((err as Error).message).to.contain("refused");
      await nothingHeld([clientConn, serverConn], "a failure");
    });

    it("frees a large request when the call is cancelled or times out", async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let running = 0;
      const { client } = await serve(async (items) => {
        running++;
        await gate;
        return items.map((it) => ({ action: it.observation }));
      });
      // Cancelled while the model runs: the request was pulled, the result never stored.
      const ac = new AbortController();
      const p = client.submit({ observation: pattern(MB) }, { signal: ac.signal }).catch((e: unknown) => e);
      await until(() => running === 1, 5_000, "the model running");
      ac.abort();
      expect(await p).to.be.instanceOf(CancelledError);
      // Times out behind it, in the queue.
      const timed = await client.submit({ observation: pattern(MB) }, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(timed).to.be.instanceOf(CallTimeoutError);
      await nothingHeld([clientConn], "a cancel and a timeout (client)");
      release();
      await nothingHeld([clientConn, serverConn], "a cancel and a timeout");
    });

    it("frees a large result at once when its call is cancelled after the server answered", async () => {
      const ac = new AbortController();
      // The caller gives up as the model finishes: its cancel reaches the server after the result was stored.
      const { client } = await serve((items) => {
        ac.abort();
        return items.map(() => ({ action: pattern(MB) }));
      });
      const stored = stats(serverConn).stored;
      const err = await client.submit({ observation: pattern(4) }, { signal: ac.signal, timeoutMs: 60_000 }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CancelledError);
      await until(() => stats(serverConn).stored > stored, 5_000, "the result stored");
      // Far sooner than the call's deadline (60 s), at which the store would free it anyway.
      await nothingHeld([clientConn, serverConn], "a cancelled result", 3_000);
    });

    it("keeps no large result that is ready after its call timed out", async () => {
      const { client } = await serve(async (items) => {
        await new Promise((r) => setTimeout(r, 400));
        return items.map(() => ({ action: pattern(MB) }));
      });
      const stored = stats(serverConn).stored;
      const err = await client.submit({ observation: pattern(4) }, { timeoutMs: 200 }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CallTimeoutError);
      await until(() => stats(serverConn).stored > stored, 5_000, "the late result encoded");
      expect(stats(serverConn).held, "dropped as it was made, not a grace period later").to.equal(0);
      await nothingHeld([clientConn, serverConn], "a late result");
    });

    it("refuses an observation or a result over maxValueBytes with a CodecError naming the limit", async () => {
      const { client } = await serve((items) => items.map((it) => ({ action: new Float32Array(it.observation[0]!) })));
      configureChunks(serverConn, { maxValueBytes: 2 * MB });
      const back: any = await client.submit({ observation: new Float32Array([MB]) }).catch((e: unknown) => e);
      expect(back).to.be.instanceOf(CodecError);
      expect(back.message).to.contain("maxValueBytes");
      const small = await connectBus({ servers: nats.url, maxValueBytes: 2 * MB });
      try {
        const t = new NatsTransport<Obs, Act>({ connection: small, namespace: ns, name: "policy" });
        const err: any = await t.submit({ observation: new Float32Array(MB) }).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(CodecError);
        expect(err.message).to.contain("maxValueBytes");
        await t.close();
        expect(stats(small).held).to.equal(0);
        expect((await client.submit({ observation: new Float32Array([MB / 4]) })).action).to.have.length(MB / 4);
        await nothingHeld([clientConn, serverConn], "refusals");
      } finally {
        await small.close();
      }
    });

    it("fails the call with ConnectionLostError and frees the partial result when the server is killed mid-pull", async () => {
      const w = startWorker("inference", { url: nats.url, namespace: ns }, SENDER);
      await w.next();
      slowReceiver(clientConn);
      const client = new NatsTransport<{ n: number }, { action: Float32Array }>({ connection: clientConn, namespace: ns, name: "policy", timeoutMs: 20_000 });
      cleanup.push(() => client.close());
      let pullingAtKill = -1;
      onChunkRequest(serverConn, ns, 5, () => {
        pullingAtKill = stats(clientConn).pulling;
        w.child.kill("SIGKILL");
      });
      await serverConn.transport.flush();
      // 32 MB in chunks of ~252 KiB, one at a time: the kill lands after the fifth.
      const err = await client.submit({ n: 8 * MB }).catch((e: unknown) => e);
      expect(pullingAtKill, "the result was being pulled when its sender died").to.equal(1);
      expect(err).to.be.instanceOf(ConnectionLostError);
      expect(stats(clientConn).pulling, "partial value freed").to.equal(0);
      expect(stats(clientConn).pullingBytes).to.equal(0);
    });
  });

  describe("inference from a client killed mid-request", () => {
    it("frees the server's partial request and answers nothing to the model", async () => {
      const ns = uniqueNamespace("chinf");
      const serverConn = await connectBus({ servers: nats.url });
      const spyConn = await connectBus({ servers: nats.url });
      const t = new NatsTransport<{ observation: Float32Array }, unknown>({ connection: serverConn, namespace: ns, name: "policy" });
      let ran = 0;
      const s = new InferenceServer(async (items: unknown[]) => (ran++, items.map(() => 0)), t, { collate: (items) => items }).start();
      try {
        await s.ready();
        slowReceiver(serverConn);
        let pullingAtKill = -1;
        let w: ReturnType<typeof startWorker> | undefined;
        onChunkRequest(spyConn, ns, 5, () => {
          pullingAtKill = stats(serverConn).pulling;
          w!.child.kill("SIGKILL");
        });
        await spyConn.transport.flush();
        w = startWorker("inference-client", { url: nats.url, namespace: ns, n: 8 * MB }, SENDER);
        await w.exited;
        expect(pullingAtKill, "the request was being pulled when its sender died").to.equal(1);
        await until(() => stats(serverConn).pulling === 0 && t.held === 0, 5_000, "the partial request freed");
        expect(stats(serverConn).pullingBytes).to.equal(0);
        expect(ran, "the model never saw it").to.equal(0);
      } finally {
        await s.shutdown();
        await t.close();
        await Promise.all([serverConn.close(), spyConn.close()]);
      }
    });
  });

  describe("stream items", () => {
    /** Items in order: large Float32Arrays (item k filled from k) between small strings. */
    class Items {
      async *mixed(count: number, n: number): AsyncGenerator<Float32Array | string> {
        for (let k = 0; k < count; k++) {
          yield pattern(n, k);
          yield `after ${k}`;
          // Some items leave alone, some together in one frame.
          if (k % 2) await new Promise((r) => setImmediate(r));
        }
      }

      /** Each item a frame of its own. */
      async *spaced(count: number, n: number): AsyncGenerator<Float32Array> {
        for (let k = 0; k < count; k++) {
          yield pattern(n, k);
          await new Promise((r) => setImmediate(r));
        }
      }

      /** An item of each size, each a frame of its own. */
      async *sizes(ns: number[]): AsyncGenerator<Float32Array> {
        for (const [k, n] of ns.entries()) {
          yield pattern(n, k);
          await new Promise((r) => setImmediate(r));
        }
      }

      async *failsAfter(count: number, n: number): AsyncGenerator<Float32Array> {
        for (let k = 0; k < count; k++) yield pattern(n, k);
        throw new RangeError(`failed after ${count}`);
      }
    }

    let host: Services;
    let caller: Services;
    let h: any;
    before(async () => {
      const ns = uniqueNamespace("chstream");
      host = await getServices({ backend: "nats", servers: nats.url, namespace: ns });
      caller = await getServices({ backend: "nats", servers: nats.url, namespace: ns });
      await host.register("items", Items);
      h = withOptions(await caller.get<Items>("items"), { timeoutMs: 60_000 });
    });
    after(async () => {
      await caller?.close();
      await host?.reset();
      await host?.close();
    });
    const conns = () => [host.connection, caller.connection];

    it("carries items over the threshold in chunks, in order with small ones, and keeps nothing", async () => {
      const n = 200_000; // 800 KB each
      const stored = stats(host.connection).stored;
      const got: unknown[] = [];
      for await (const x of h.mixed(6, n)) got.push(x);
      expect(got).to.have.length(12);
      for (let k = 0; k < 6; k++) {
        expectPattern(got[2 * k], n, k);
        expect(got[2 * k + 1]).to.equal(`after ${k}`);
      }
      expect(stats(host.connection).stored - stored).to.be.within(3, 6);
      await nothingHeld(conns(), "a stream");
    });

    it("keeps small items on the one-message path", async () => {
      const stored = stats(host.connection).stored;
      const got: unknown[] = [];
      for await (const x of h.mixed(4, 100)) got.push(x);
      expect(got).to.have.length(8);
      expectPattern(got[6], 100, 3);
      expect(stats(host.connection).stored).to.equal(stored);
    });

    it("frees what the host holds when the consumer stops early", async () => {
      const n = 200_000;
      const stored = stats(host.connection).stored;
      for await (const x of h.mixed(40, n)) {
        expectPattern(x, n, 0);
        // The host runs ahead within the window: more frames are held by now.
        await until(() => stats(host.connection).stored - stored > 3, 5_000, "frames held ahead");
        break;
      }
      // Long before the call's deadline (60 s).
      await nothingHeld(conns(), "a consumer's break", 3_000);
    });

    it("releases frames the host finished sending when the consumer stops early", async () => {
      const n = 200_000;
      const stored = stats(host.connection).stored;
      for await (const x of h.spaced(5, n)) {
        expectPattern(x, n, 0);
        // All five sent and the stream ended: only the caller can free the four it will not pull.
        await until(() => stats(host.connection).stored - stored === 5, 5_000, "every frame sent");
        break;
      }
      await nothingHeld(conns(), "a break after the end", 3_000);
    });

    it("delivers the items before a generator's error, then the error, and keeps nothing", async () => {
      const n = 200_000;
      const got: unknown[] = [];
      const err = await (async () => {
        for await (const x of h.failsAfter(3, n)) got.push(x);
      })().catch((e: unknown) => e);
      expect(err).to.be.instanceOf(RemoteError);
      expect((err as Error).message).to.contain("failed after 3");
      expect(got).to.have.length(3);
      for (let k = 0; k < 3; k++) expectPattern(got[k], n, k);
      await nothingHeld(conns(), "a failed stream");
    });

    it("frees what is held when the stream is cancelled by its signal", async () => {
      const n = 200_000;
      const ac = new AbortController();
      const stored = stats(host.connection).stored;
      const err = await (async () => {
        for await (const x of withOptions(h, { signal: ac.signal }).mixed(40, n)) {
          if (typeof x !== "string") await until(() => stats(host.connection).stored - stored > 3, 5_000, "frames held ahead");
          ac.abort();
        }
      })().catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CancelledError);
      await nothingHeld(conns(), "a cancelled stream", 3_000);
    });

    it("ends the stream with a CodecError naming maxValueBytes at an item over it", async () => {
      const ns = uniqueNamespace("chstream");
      const strict = await getServices({ backend: "nats", servers: nats.url, namespace: ns, maxValueBytes: 2 * MB });
      const s = await getServices({ backend: "nats", servers: nats.url, namespace: ns });
      try {
        await strict.register("items", Items);
        const got: unknown[] = [];
        const err: any = await (async () => {
          for await (const x of ((await s.get<any>("items")) as any).sizes([200_000, MB])) got.push(x);
        })().catch((e: unknown) => e);
        expect(got).to.have.length(1);
        expectPattern(got[0], 200_000, 0);
        expect(err).to.be.instanceOf(CodecError);
        expect(err.message).to.contain("maxValueBytes");
        await nothingHeld([strict.connection, s.connection], "a refused item");
      } finally {
        await s.close();
        await strict.reset();
        await strict.close();
      }
    });

    it("ends the stream with an error and frees the partial item when the host is killed mid-pull", async () => {
      const ns = uniqueNamespace("chstream");
      const w = startWorker("stream", { url: nats.url, namespace: ns }, SENDER);
      await w.next();
      const s = await getServices({ backend: "nats", servers: nats.url, namespace: ns });
      try {
        slowReceiver(s.connection);
        let pullingAtKill = -1;
        onChunkRequest(s.connection, ns, 5, () => {
          pullingAtKill = stats(s.connection).pulling;
          w.child.kill("SIGKILL");
        });
        await s.connection.transport.flush();
        const items: any = withOptions(await s.get<any>("items"), { timeoutMs: 20_000 });
        const err = await (async () => {
          for await (const _ of items.items(2, 8 * MB));
        })().catch((e: unknown) => e);
        expect(pullingAtKill, "an item was being pulled when its sender died").to.equal(1);
        expect(err).to.satisfy((e: unknown) => e instanceof ConnectionLostError || e instanceof ReplicaCrashedError);
        expect(stats(s.connection).pulling, "partial item freed").to.equal(0);
        expect(stats(s.connection).pullingBytes).to.equal(0);
      } finally {
        await s.close();
      }
    });
  });
});
