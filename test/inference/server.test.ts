import { expect } from "chai";
import { CallTimeoutError, InvalidOptionsError, OverloadedError, RemoteError, ServiceUnavailableError } from "../../src/errors/index.ts";
import {
  InferenceServer,
  InferenceServerStateError,
  InferenceShutdownError,
  ResultCountError,
  type TensorBatch,
  type TensorRecord,
} from "../../src/inference/index.ts";
import { testUrl, until } from "../helpers/nats.ts";
import { doubling, gate, inProcessKit, natsKit, obs, type TransportKit } from "./helpers.ts";

// TorchRL's core InferenceServer tests, run over both transports.
for (const kind of ["in-process", "nats"] as const) {
  describe(`InferenceServer over ${kind} transport`, function () {
    this.timeout(15_000);
    let kit: TransportKit;
    const servers: InferenceServer<any, any, any, any>[] = [];
    const serve = <S extends InferenceServer<any, any, any, any>>(s: S): S => (servers.push(s), s);

    beforeEach(async () => {
      kit = kind === "nats" ? await natsKit(testUrl()) : await inProcessKit();
    });
    afterEach(async () => {
      await Promise.all(servers.splice(0).map((s) => s.shutdown({ timeoutMs: 100 })));
      await kit.close();
    });

    /** A model that blocks its first call until the test opens the gate: later requests pile up. */
    const blockedFirst = (g: { wait: Promise<void> }, sizes: number[], model = doubling) => async (batch: TensorBatch) => {
      sizes.push(batch.batchSize);
      if (sizes.length === 1) await g.wait;
      return model(batch);
    };

    it("answers a single request with the model's output for it", async () => {
      const server = serve(new InferenceServer(doubling, kit.server(), { maxBatchSize: 4 }).start());
      await server.ready();
      const out = (await kit.client().submit(obs(1, 2, 3, 4))) as TensorRecord;
      expect(out.action).to.be.instanceOf(Float32Array);
      expect([...(out.action as Float32Array)]).to.deep.equal([2, 4, 6, 8]);
    });

    it("collects concurrent requests into one model call", async () => {
      const g = gate();
      const sizes: number[] = [];
      const st = kit.server();
      const server = serve(new InferenceServer(blockedFirst(g, sizes), st, { maxBatchSize: 16 }).start());
      await server.ready();
      const client = kit.client();
      const first = client.submit(obs(0));
      await until(() => sizes.length === 1, 5_000, "first batch");
      const rest = Array.from({ length: 8 }, (_, i) => client.submit(obs(i + 1)));
      await until(() => st.buffered === 8, 5_000, "8 buffered requests");
      g.open();
      const results = (await Promise.all([first, ...rest])) as TensorRecord[];
      expect(sizes).to.deep.equal([1, 8]);
      expect(results.map((r) => (r.action as Float32Array)[0])).to.deep.equal([0, 2, 4, 6, 8, 10, 12, 14, 16]);
    });

    it("never gives the model more than maxBatchSize items", async () => {
      const g = gate();
      const sizes: number[] = [];
      const st = kit.server();
      const server = serve(new InferenceServer(blockedFirst(g, sizes), st, { maxBatchSize: 4 }).start());
      await server.ready();
      const client = kit.client();
      const first = client.submit(obs(0));
      await until(() => sizes.length === 1, 5_000, "first batch");
      const rest = Array.from({ length: 20 }, (_, i) => client.submit(obs(i)));
      await until(() => st.buffered === 20, 5_000, "20 buffered requests");
      g.open();
      await Promise.all([first, ...rest]);
      expect(sizes.slice(1)).to.deep.equal([4, 4, 4, 4, 4]);
      expect(server.stats().requests).to.equal(21);
    });

    it("waits up to timeoutMs for minBatchSize, then runs a partial batch", async () => {
      const sizes: number[] = [];
      const server = serve(
        new InferenceServer((b: TensorBatch) => (sizes.push(b.batchSize), doubling(b)), kit.server(), { maxBatchSize: 8, minBatchSize: 4, timeoutMs: 150 }).start(),
      );
      await server.ready();
      const t0 = performance.now();
      await kit.client().submit(obs(1));
      expect(performance.now() - t0).to.be.at.least(140);
      expect(sizes).to.deep.equal([1]);
    });

    it("runs as soon as minBatchSize requests are in, without waiting for the timeout", async () => {
      const sizes: number[] = [];
      const server = serve(
        new InferenceServer((b: TensorBatch) => (sizes.push(b.batchSize), doubling(b)), kit.server(), { maxBatchSize: 8, minBatchSize: 4, timeoutMs: 5_000 }).start(),
      );
      await server.ready();
      const client = kit.client();
      const t0 = performance.now();
      const a = [client.submit(obs(1)), client.submit(obs(2))];
      await new Promise((r) => setTimeout(r, 30));
      const b = [client.submit(obs(3)), client.submit(obs(4))];
      await Promise.all([...a, ...b]);
      expect(sizes).to.deep.equal([4]);
      expect(performance.now() - t0).to.be.below(2_000);
    });

    it("sends a model error to every caller of the batch and keeps serving", async () => {
      const g = gate();
      const sizes: number[] = [];
      const st = kit.server();
      let fail = true;
      const model = async (b: TensorBatch) => {
        sizes.push(b.batchSize);
        if (sizes.length === 1) await g.wait;
        if (fail && sizes.length === 2) throw new TypeError("model error");
        return doubling(b);
      };
      const server = serve(new InferenceServer(model, st, { maxBatchSize: 16 }).start());
      await server.ready();
      const client = kit.client();
      const first = client.submit(obs(0));
      await until(() => sizes.length === 1, 5_000, "first batch");
      const failing = Array.from({ length: 5 }, (_, i) => client.submit(obs(i)).catch((e: Error) => e));
      await until(() => st.buffered === 5, 5_000, "5 buffered");
      g.open();
      await first;
      const errors = await Promise.all(failing);
      expect(sizes[1]).to.equal(5);
      for (const e of errors) {
        expect((e as Error).message).to.equal("model error");
        if (kind === "nats") {
          expect(e).to.be.instanceOf(RemoteError);
          expect((e as RemoteError).remoteName).to.equal("TypeError");
        } else {
          expect(e).to.be.instanceOf(TypeError);
        }
      }
      fail = false;
      const ok = (await client.submit(obs(7))) as TensorRecord;
      expect((ok.action as Float32Array)[0]).to.equal(14);
      expect(server.stats().failedBatches).to.equal(1);
    });

    it('rejects the whole batch when the model returns the wrong number of results', async () => {
      const g = gate();
      const sizes: number[] = [];
      const st = kit.server();
      const model = async (items: number[]) => {
        sizes.push(items.length);
        if (sizes.length === 1) await g.wait;
        return [...items.map((x) => x * 10), 0];
      };
      const server = serve(new InferenceServer(model, st, { maxBatchSize: 16, collate: (items: number[]) => items }).start());
      await server.ready();
      const client = kit.client();
      const first = client.submit(1).catch((e: Error) => e);
      await until(() => sizes.length === 1, 5_000, "first batch");
      const three = [2, 3, 4].map((x) => client.submit(x).catch((e: Error) => e));
      await until(() => st.buffered === 3, 5_000, "3 buffered");
      g.open();
      const firstErr = await first;
      expect(firstErr).to.be.instanceOf(ResultCountError);
      expect((firstErr as Error).message).to.equal("Model returned 2 results for a batch of 1 inputs.");
      for (const e of await Promise.all(three)) {
        expect(e).to.be.instanceOf(ResultCountError);
        expect((e as Error).message).to.equal("Model returned 4 results for a batch of 3 inputs.");
      }
    });

    it("works with collate: (items) => items and a model returning per-item results", async () => {
      const server = serve(
        new InferenceServer(async (items: { id: number; text: string }[]) => items.map((x) => ({ id: x.id, upper: x.text.toUpperCase() })), kit.server(), {
          collate: (items: { id: number; text: string }[]) => items,
        }).start(),
      );
      await server.ready();
      const client = kit.client();
      const out = await Promise.all([1, 2, 3].map((id) => client.submit({ id, text: `item ${id}` })));
      // Plain-object results carry the behaviour-policy version (policyVersionKey).
      expect(out).to.deep.equal([1, 2, 3].map((id) => ({ id, upper: `ITEM ${id}`, policyVersion: 0 })));
    });

    it("rejects a batch whose collate fails and keeps serving", async () => {
      const collate = (items: TensorRecord[]) => {
        if (items.some((r) => "poison" in r)) throw new Error("cannot collate poisoned batch");
        return items;
      };
      const server = serve(
        new InferenceServer(async (items: TensorRecord[]) => items.map(() => ({ ok: new Int32Array([1]) })), kit.server(), { maxBatchSize: 1, collate }).start(),
      );
      await server.ready();
      const client = kit.client();
      const bad = await client.submit({ observation: new Float32Array(1), poison: new Int8Array(1) }).catch((e: Error) => e);
      expect((bad as Error).message).to.equal("cannot collate poisoned batch");
      const good = (await client.submit(obs(1))) as TensorRecord;
      expect([...(good.ok as Int32Array)]).to.deep.equal([1]);
      expect(server.isRunning).to.equal(true);
    });

    it('shutdown lets the running batch finish and rejects what is pending with "InferenceServer is shutting down."', async () => {
      const g = gate();
      const sizes: number[] = [];
      const st = kit.server();
      const server = new InferenceServer(blockedFirst(g, sizes), st, { maxBatchSize: 16 }).start();
      await server.ready();
      const client = kit.client();
      const first = client.submit(obs(21));
      await until(() => sizes.length === 1, 5_000, "first batch");
      const pending = Array.from({ length: 3 }, (_, i) => client.submit(obs(i)).catch((e: Error) => e));
      await until(() => st.buffered === 3, 5_000, "3 buffered");
      const stopping = server.shutdown();
      g.open();
      await stopping;
      expect(((await first) as TensorRecord).action).to.deep.equal(new Float32Array([42]));
      for (const e of await Promise.all(pending)) {
        expect(e).to.be.instanceOf(InferenceShutdownError);
        expect((e as Error).message).to.equal("InferenceServer is shutting down.");
      }
      expect(sizes).to.deep.equal([1]);
      // After the last server is gone, new calls fail at once rather than at their deadline.
      const t0 = performance.now();
      const late = await client.submit(obs(1)).catch((e: Error) => e);
      expect(late).to.be.instanceOf(kind === "nats" ? ServiceUnavailableError : InferenceShutdownError);
      expect(performance.now() - t0).to.be.below(1_000);
    });

    it("shutdown fails a model call that outlives shutdownTimeoutMs", async () => {
      const never = new Promise<never>(() => {});
      const server = new InferenceServer(() => never, kit.server(), { shutdownTimeoutMs: 100 }).start();
      await server.ready();
      const stuck = kit.client().submit(obs(1)).catch((e: Error) => e);
      await until(() => server.stats().batches === 0 && (server as any).inFlight !== undefined, 5_000, "batch in flight");
      const t0 = performance.now();
      await server.shutdown();
      expect(performance.now() - t0).to.be.below(1_000);
      const e = await stuck;
      expect(e).to.be.instanceOf(InferenceShutdownError);
      expect((e as Error).message).to.equal("InferenceServer is shutting down.");
    });

    it("refuses start() twice, and after shutdown; shutdown is idempotent", async () => {
      const server = new InferenceServer(doubling, kit.server()).start();
      expect(() => server.start()).to.throw(InferenceServerStateError, "Server is already running.");
      const a = server.shutdown();
      expect(server.shutdown()).to.equal(a);
      await a;
      await server.shutdown();
      expect(() => server.start()).to.throw(InferenceServerStateError, /shut down/);
      expect(server.isRunning).to.equal(false);
    });

    it("shuts down through await using", async () => {
      let s: InferenceServer<any, any, any, any> | undefined;
      {
        await using server = new InferenceServer(doubling, kit.server()).start();
        s = server;
        await server.ready();
        expect(server.isRunning).to.equal(true);
      }
      expect(s!.isRunning).to.equal(false);
    });

    it("reports requests, batches, mean batch size, queue wait and model time", async () => {
      const server = serve(
        new InferenceServer(async (b: TensorBatch) => (await new Promise((r) => setTimeout(r, 5)), doubling(b)), kit.server(), { maxBatchSize: 8, minBatchSize: 4, timeoutMs: 500 }).start(),
      );
      await server.ready();
      const client = kit.client();
      await Promise.all(Array.from({ length: 8 }, (_, i) => client.submit(obs(i))));
      const s = server.stats();
      expect(s.requests).to.equal(8);
      expect(s.batches).to.be.within(1, 2);
      expect(s.meanBatchSize).to.equal(8 / s.batches);
      expect(s.p50ModelMs).to.be.at.least(4);
      expect(s.p95ModelMs).to.be.at.least(s.p50ModelMs);
      expect(s.p95QueueWaitMs).to.be.at.least(s.p50QueueWaitMs).and.at.least(0);
      expect(s.requestsPerSecond).to.be.above(0);
      server.stats({ reset: true });
      expect(server.stats().requests).to.equal(0);
    });

    /**
     * Closed-loop callers in two groups that start apart: each caller acts (2 ms) between its
     * action and its next request. The model takes 20 ms. Without gathering, the loop runs the
     * group that waited while the other's batch ran, and the groups keep taking turns in half
     * batches; gathering waits for the callers it just answered and merges them.
     */
    const closedLoop = async (gatherMs: number | undefined) => {
      const sizes: number[] = [];
      const model = async (b: TensorBatch) => {
        sizes.push(b.batchSize);
        await new Promise((r) => setTimeout(r, 20));
        return doubling(b);
      };
      const server = serve(new InferenceServer(model, kit.server(), { maxBatchSize: 8, ...(gatherMs === undefined ? {} : { gatherMs }) }).start());
      await server.ready();
      const client = kit.client();
      let stop = false;
      const actor = async (i: number, startMs: number) => {
        await new Promise((r) => setTimeout(r, startMs));
        while (!stop) {
          await client.submit(obs(i));
          await new Promise((r) => setTimeout(r, 2));
        }
      };
      const actors = Array.from({ length: 8 }, (_, i) => actor(i, i < 4 ? 0 : 8));
      await until(() => sizes.length >= 24, 10_000, "24 batches");
      stop = true;
      await Promise.all(actors);
      await server.shutdown();
      return sizes.slice(8, 24);
    };

    it("gathers the callers it just answered into one batch instead of two that take turns (gatherMs)", async () => {
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const gathered = await closedLoop(10);
      expect(mean(gathered), `batch sizes ${gathered}`).to.be.at.least(7);
      const apart = await closedLoop(undefined); // the default, 0
      expect(apart.filter((n) => n < 8).length, `batch sizes ${apart}`).to.be.at.least(12);
    });

    it("refuses a gatherMs that is not a duration", () => {
      expect(() => new InferenceServer(doubling, kit.server(), { gatherMs: -1 })).to.throw(InvalidOptionsError, /gatherMs/);
      expect(() => new InferenceServer(doubling, kit.server(), { gatherMS: 1 } as never)).to.throw(InvalidOptionsError, /gatherMs/);
    });

    it("never makes a request after an idle spell wait for gathering", async () => {
      const model = async (b: TensorBatch) => (await new Promise((r) => setTimeout(r, 100)), doubling(b));
      const server = serve(new InferenceServer(model, kit.server(), { maxBatchSize: 8, gatherMs: 50 }).start());
      await server.ready();
      const client = kit.client();
      await Promise.all(Array.from({ length: 4 }, (_, i) => client.submit(obs(i)))); // a batch of 4 answered
      await new Promise((r) => setTimeout(r, 120)); // idle longer than the 50 ms gathering window
      server.stats({ reset: true });
      await client.submit(obs(9));
      expect(server.stats().p50QueueWaitMs).to.be.below(25);
    });

    it("routes out-of-order completions to the right callers (a slow and a fast server)", async () => {
      const g = gate();
      let slowHeld: number | undefined;
      const slowModel = async (b: TensorBatch) => {
        if (slowHeld === undefined) {
          slowHeld = (b.data.observation as Float32Array)[0];
          await g.wait;
        }
        return doubling(b);
      };
      const slow = serve(new InferenceServer(slowModel, kit.server(), { maxBatchSize: 1 }).start());
      await slow.ready();
      const client = kit.client();
      const finished: number[] = [];
      const call = (i: number) => client.submit(obs(i, -i)).then((r) => (finished.push(i), r as TensorRecord));
      const calls = [call(0)];
      await until(() => slowHeld === 0, 5_000, "request 0 held by the slow server");
      const fast = serve(new InferenceServer(doubling, kit.server(), { maxBatchSize: 1 }).start());
      await fast.ready();
      // Later requests until one completes (NATS routes each to either server at random).
      for (let i = 1; finished.length === 0 && i < 100; i++) {
        calls.push(call(i));
        await new Promise((r) => setTimeout(r, 5));
      }
      g.open();
      const results = await Promise.all(calls);
      results.forEach((r, i) => expect([...(r.action as Float32Array)]).to.deep.equal([2 * i, -2 * i]));
      expect(finished[0]).to.not.equal(0);
      expect(finished).to.include(0);
      expect(fast.stats().requests).to.be.above(0);
    });

    it("drops requests whose caller gave up before running the model", async () => {
      const g = gate();
      const sizes: number[] = [];
      const seen: number[] = [];
      const st = kit.server();
      const model = async (b: TensorBatch) => {
        sizes.push(b.batchSize);
        seen.push(...(b.data.observation as Float32Array));
        if (sizes.length === 1) await g.wait;
        return doubling(b);
      };
      const server = serve(new InferenceServer(model, st, { maxBatchSize: 16 }).start());
      await server.ready();
      const client = kit.client();
      const first = client.submit(obs(1));
      await until(() => sizes.length === 1, 5_000, "first batch");
      const gaveUp = await client.submit(obs(99), { timeoutMs: 50 }).catch((e: Error) => e);
      expect(gaveUp).to.be.instanceOf(CallTimeoutError);
      const kept = client.submit(obs(3));
      await until(() => st.buffered === 2, 5_000, "2 buffered");
      g.open();
      await Promise.all([first, kept]);
      expect(seen).to.deep.equal([1, 3]);
      expect(server.stats().expired).to.equal(1);
    });

    it("refuses requests beyond maxBuffered at once with OverloadedError", async () => {
      const g = gate();
      const sizes: number[] = [];
      const st = kit.server({ maxBuffered: 2 });
      const server = serve(new InferenceServer(blockedFirst(g, sizes), st).start());
      await server.ready();
      const client = kit.client();
      const first = client.submit(obs(1));
      await until(() => sizes.length === 1, 5_000, "first batch");
      const two = [client.submit(obs(2)), client.submit(obs(3))];
      await until(() => st.buffered === 2, 5_000, "2 buffered");
      const over = await client.submit(obs(4)).catch((e: Error) => e);
      expect(over).to.be.instanceOf(OverloadedError);
      expect((over as OverloadedError).retryable).to.equal(true);
      g.open();
      await Promise.all([first, ...two]);
    });
  });
}
