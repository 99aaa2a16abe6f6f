import { expect } from "chai";
import { InvalidOptionsError } from "../../src/errors/index.ts";
import { InferenceServer, InProcessTransport, type TensorBatch, type TensorRecord } from "../../src/inference/index.ts";
import { WeightSyncError, type WeightSyncReceiver } from "../../src/inference/weights.ts";
import { testUrl, until } from "../helpers/nats.ts";
import { doubling, gate, inProcessKit, natsKit, obs, type TransportKit } from "./helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const first = (r: TensorRecord) => (r.action as Float32Array)[0];

/**
 * A model with two weights that must always match: it reads `a`, yields (as an accelerator's
 * launch would), then reads `b`. A batch that overlapped an update, or an update that
 * overlapped a batch, shows as a result with a !== b.
 */
function pairedModel() {
  const weights = { a: 0, b: 0 };
  let running = 0;
  let overlaps = 0;
  const model = async (batch: TensorBatch) => {
    running++;
    if (running > 1) overlaps++;
    const a = weights.a;
    await sleep(Math.random() < 0.5 ? 0 : 1);
    const b = weights.b;
    running--;
    const n = batch.batchSize;
    return { batchSize: n, data: { a: new Float64Array(n).fill(a), b: new Float64Array(n).fill(b) }, shapes: { a: [n, 1], b: [n, 1] } };
  };
  /** Sets both weights to v, yielding in between: half-applied while it sleeps. */
  const update = async (v: number) => {
    if (running > 0) overlaps++;
    weights.a = v;
    await sleep(Math.random() < 0.5 ? 0 : 2);
    weights.b = v;
    if (running > 0) overlaps++;
  };
  return { model, weights, update, overlaps: () => overlaps, running: () => running };
}

/** A scripted receiver in the shape of TorchRL's schemes: it keeps its own flags. */
function fakeReceiver(opts: { initialized?: boolean; synchronized?: boolean; connectMs?: number; applyItself?: (model: unknown, w: unknown) => void } = {}) {
  const log: string[] = [];
  const inbox: unknown[] = [];
  let receives = 0;
  let failNext: Error | undefined;
  const r: WeightSyncReceiver<any, unknown> & {
    initializedOnReceiver: boolean;
    synchronizedOnReceiver: boolean;
    model?: unknown;
    modelId?: string;
  } = {
    initializedOnReceiver: opts.initialized ?? false,
    synchronizedOnReceiver: opts.synchronized ?? false,
    initOnReceiver({ modelId, model }) {
      log.push(`init:${modelId}`);
      r.modelId = modelId;
      r.model = model;
      r.initializedOnReceiver = true;
    },
    async connect() {
      log.push("connect");
      if (opts.connectMs) await sleep(opts.connectMs);
      r.synchronizedOnReceiver = true;
      log.push("connected");
    },
    receive() {
      receives++;
      if (failNext) {
        const e = failNext;
        failNext = undefined;
        throw e;
      }
      const w = inbox.shift();
      if (w !== undefined && opts.applyItself) opts.applyItself(r.model, w);
      return w;
    },
  };
  return { receiver: r, log, push: (w: unknown) => inbox.push(w), receives: () => receives, failNext: (e: Error) => (failNext = e), pending: () => inbox.length };
}

for (const kind of ["in-process", "nats"] as const) {
  describe(`InferenceServer weights and policy versions over ${kind} transport`, function () {
    this.timeout(30_000);
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

    it("tags every result with the policy version: default key, initial version, dotted path, key array, null", async () => {
      const cases: [opts: object, check: (r: Record<string, any>) => void][] = [
        [{}, (r) => expect(r.policyVersion).to.equal(0)],
        [{ policyVersion: 7 }, (r) => expect(r.policyVersion).to.equal(7)],
        [{ policyVersion: 3, policyVersionKey: "info.version" }, (r) => expect(r.info).to.deep.equal({ version: 3 })],
        [{ policyVersionKey: ["meta.v"] }, (r) => expect(r["meta.v"]).to.equal(0)],
        [{ policyVersionKey: null }, (r) => expect(Object.keys(r)).to.deep.equal(["action"])],
      ];
      for (const [opts, check] of cases) {
        const server = serve(new InferenceServer(doubling, kit.server(), opts).start());
        await server.ready();
        const out = (await kit.client().submit(obs(4))) as Record<string, any>;
        expect(first(out)).to.equal(8);
        check(out);
        await server.shutdown();
        servers.splice(servers.indexOf(server), 1);
      }
    });

    it("leaves results that are not plain records alone, and tags copies (a reused output object is not rewritten)", async () => {
      const shared = { kind: "cached" };
      const server = serve(
        new InferenceServer(async (items: number[]) => items.map((x) => (x === 0 ? shared : x === 1 ? [x] : x * 2)), kit.server(), { collate: (items: number[]) => items }).start(),
      );
      await server.ready();
      const client = kit.client();
      expect(await client.submit(5)).to.equal(10);
      expect(await client.submit(1)).to.deep.equal([1]);
      expect(await client.submit(0)).to.deep.equal({ kind: "cached", policyVersion: 0 });
      await server.updateModel(() => {});
      expect(await client.submit(0)).to.deep.equal({ kind: "cached", policyVersion: 1 });
      expect(shared).to.deep.equal({ kind: "cached" });
    });

    it("updateModel runs between batches under concurrent load: no result mixes old and new weights", async () => {
      const p = pairedModel();
      const server = serve(new InferenceServer(p.model, kit.server(), { maxBatchSize: 8 }).start());
      await server.ready();
      const clients = server.clients(8);
      let stop = false;
      const results: Record<string, any>[] = [];
      const load = clients.map(async (c, i) => {
        while (!stop) results.push((await c.call({ x: Float32Array.of(i) })) as Record<string, any>);
      });
      const updates = 25;
      for (let v = 1; v <= updates; v++) {
        await sleep(Math.random() * 3);
        expect(await server.updateModel(async () => (await p.update(v), `set ${v}`))).to.equal(`set ${v}`);
      }
      await sleep(5);
      stop = true;
      await Promise.all(load);
      expect(p.overlaps(), "a batch and an update overlapped").to.equal(0);
      expect(results.length).to.be.greaterThan(updates);
      for (const r of results) {
        const a = r.a as Float64Array;
        const b = r.b as Float64Array;
        expect(a).to.be.instanceOf(Float64Array);
        expect(a[0], "both weights from one update").to.equal(b[0]);
        // The tag names the weights that computed the result.
        expect(r.policyVersion).to.equal(a[0]);
      }
      const versions = results.map((r) => r.policyVersion as number);
      expect(new Set(versions).size, "results from several versions").to.be.greaterThan(3);
      expect(server.policyVersion).to.equal(updates);
      expect(server.stats()).to.include({ policyVersion: updates, weightUpdates: updates });
    });

    it("updateModel waits for the running batch and holds the next until fn resolves", async () => {
      const g = gate();
      const order: string[] = [];
      let calls = 0;
      const model = async (batch: TensorBatch) => {
        const n = ++calls;
        order.push(`batch ${n} start`);
        if (n === 1) await g.wait;
        order.push(`batch ${n} end`);
        return doubling(batch);
      };
      const st = kit.server();
      const server = serve(new InferenceServer(model, st, {}).start());
      await server.ready();
      const client = kit.client();
      const r1 = client.submit(obs(1));
      await until(() => calls === 1, 5_000, "first batch running");
      const update = server.updateModel(async () => {
        order.push("update start");
        await sleep(20);
        order.push("update end");
        return 42;
      });
      const r2 = client.submit(obs(2));
      await until(() => st.buffered === 1, 5_000, "second request queued");
      await sleep(20);
      expect(order).to.deep.equal(["batch 1 start"]);
      g.open();
      expect(await update).to.equal(42);
      const [o1, o2] = (await Promise.all([r1, r2])) as Record<string, any>[];
      expect(order).to.deep.equal(["batch 1 start", "batch 1 end", "update start", "update end", "batch 2 start", "batch 2 end"]);
      expect([o1!.policyVersion, o2!.policyVersion]).to.deep.equal([0, 1]);
    });

    it("updateModel: fn's error rejects and does not bump; markWeightUpdate false does not bump; bad arguments are refused", async () => {
      const server = serve(new InferenceServer(doubling, kit.server(), { policyVersion: 4 }).start());
      await server.ready();
      const boom = new RangeError("bad weights");
      let err: unknown;
      await server.updateModel(() => {
        throw boom;
      }).catch((e) => (err = e));
      expect(err).to.equal(boom);
      await server.updateModel(async () => Promise.reject(boom)).catch((e) => (err = e));
      expect(err).to.equal(boom);
      expect(server.policyVersion).to.equal(4);
      expect(await server.updateModel((m) => typeof m, { markWeightUpdate: false })).to.equal("function");
      expect(server.stats()).to.include({ policyVersion: 4, weightUpdates: 0 });
      expect(((await kit.client().submit(obs(1))) as Record<string, any>).policyVersion).to.equal(4);
      for (const [fn, opts, why] of [
        [undefined, {}, /updateModel needs a function/],
        [() => 1, { markWeightupdate: false }, /unknown option "markWeightupdate".*did you mean "markWeightUpdate"/],
        [() => 1, { markWeightUpdate: "yes" }, /markWeightUpdate must be true or false/],
      ] as const) {
        try {
          await server.updateModel(fn as never, opts as never);
          expect.fail("should have rejected");
        } catch (e) {
          expect(e).to.be.instanceOf(InvalidOptionsError);
          expect((e as Error).message).to.match(why);
        }
      }
      expect(server.policyVersion).to.equal(4);
    });

    it("weightSync: initialised with the model and connected at start, before the first batch; polled between batches, applied, counted", async () => {
      const params = { scale: 2 };
      const model = Object.assign(
        (batch: TensorBatch) => {
          inBatch = true;
          const out = doubling(batch);
          for (let i = 0; i < out.data.action.length; i++) out.data.action[i] = (batch.data.observation as Float32Array)[i]! * params.scale;
          inBatch = false;
          return out;
        },
        { params },
      );
      let inBatch = false;
      let receivedDuringBatch = 0;
      const f = fakeReceiver({ connectMs: 100 });
      const receive = f.receiver.receive.bind(f.receiver);
      f.receiver.receive = () => {
        if (inBatch) receivedDuringBatch++;
        return receive();
      };
      const applied: unknown[] = [];
      const server = serve(
        new InferenceServer(model, kit.server(), {
          weightSync: f.receiver,
          weightSyncModelId: "actor",
          applyWeights: (m, w) => {
            applied.push(w);
            (m as typeof model).params.scale = (w as { scale: number }).scale;
          },
        }).start(),
      );
      // The client is on another connection: its request may reach the server before its
      // subscription does (no responders) unless the server's connection has flushed.
      await kit.serversSubscribed();
      const early = kit.client().submit(obs(1)); // queued while connect() runs
      await server.ready();
      expect(f.log).to.deep.equal(["init:actor", "connect", "connected"]);
      expect(f.receiver.model).to.equal(model);
      expect(first((await early) as TensorRecord)).to.equal(2);
      f.push({ scale: 10 });
      await until(() => f.pending() === 0, 5_000, "weights taken");
      const out = (await kit.client().submit(obs(1))) as Record<string, any>;
      expect([first(out as TensorRecord), out.policyVersion]).to.deep.equal([10, 1]);
      f.push({ scale: 3 });
      f.push({ scale: 5 });
      await until(() => f.pending() === 0, 5_000, "weights taken");
      const out2 = (await kit.client().submit(obs(1))) as Record<string, any>;
      expect([first(out2 as TensorRecord), out2.policyVersion]).to.deep.equal([5, 3]);
      expect(applied).to.deep.equal([{ scale: 10 }, { scale: 3 }, { scale: 5 }]);
      expect(server.stats()).to.include({ policyVersion: 3, weightUpdates: 3, weightSyncErrors: 0 });
      expect(f.receives()).to.be.greaterThan(3);
      expect(receivedDuringBatch).to.equal(0);
    });

    it("weightSync without applyWeights: the receiver applies what it receives itself (as TorchRL's schemes), the server counts", async () => {
      const params = { scale: 1 };
      const model = Object.assign((batch: TensorBatch) => {
        const out = doubling(batch);
        out.data.action[0] = (batch.data.observation as Float32Array)[0]! * params.scale;
        return out;
      }, { params });
      const f = fakeReceiver({ applyItself: (m, w) => ((m as typeof model).params.scale = w as number) });
      const server = serve(new InferenceServer(model, kit.server(), { weightSync: f.receiver }).start());
      await server.ready();
      expect(f.log).to.deep.equal(["init:policy", "connect", "connected"]);
      f.push(7);
      await until(() => server.policyVersion === 1, 5_000, "update counted");
      const out = (await kit.client().submit(obs(2))) as Record<string, any>;
      expect([first(out as TensorRecord), out.policyVersion]).to.deep.equal([14, 1]);
    });

    it("weightSync with an async receive(): a promise of weights is applied, a promise of nothing is not", async () => {
      const inbox: number[] = [];
      let polls = 0;
      const receiver: WeightSyncReceiver<unknown, number> = {
        initOnReceiver() {},
        async connect() {},
        async receive() {
          polls++;
          await sleep(0);
          return inbox.shift();
        },
      };
      let scale = 1;
      const model = (batch: TensorBatch) => {
        const out = doubling(batch);
        out.data.action[0] = (batch.data.observation as Float32Array)[0]! * scale;
        return out;
      };
      const server = serve(new InferenceServer(model, kit.server(), { weightSync: receiver, applyWeights: (_m, w) => void (scale = w as number) }).start());
      await server.ready();
      await until(() => polls > 3, 5_000, "polled while idle");
      expect(server.policyVersion).to.equal(0);
      inbox.push(9);
      await until(() => server.policyVersion === 1, 5_000, "async weights applied");
      const out = (await kit.client().submit(obs(2))) as Record<string, any>;
      expect([first(out as TensorRecord), out.policyVersion]).to.deep.equal([18, 1]);
    });

    it("weightSync flags: an initialised or synchronised receiver is not initialised or connected again", async () => {
      const both = fakeReceiver({ initialized: true, synchronized: true });
      const s1 = serve(new InferenceServer(doubling, kit.server(), { weightSync: both.receiver }).start());
      await s1.ready();
      expect(both.log).to.deep.equal([]);
      await s1.shutdown();
      servers.splice(servers.indexOf(s1), 1);

      const initOnly = fakeReceiver({ initialized: true });
      const s2 = serve(new InferenceServer(doubling, kit.server(), { weightSync: initOnly.receiver }).start());
      await s2.ready();
      expect(initOnly.log).to.deep.equal(["connect", "connected"]);
      await s2.shutdown();
      servers.splice(servers.indexOf(s2), 1);

      // A receiver reused by a new server (a restart) set its flags the first time: nothing is redone.
      const s3 = serve(new InferenceServer(doubling, kit.server(), { weightSync: initOnly.receiver }).start());
      await s3.ready();
      expect(initOnly.log).to.deep.equal(["connect", "connected"]);
      initOnly.push({});
      await until(() => s3.policyVersion === 1, 5_000, "polled by the new server");
      expect(((await kit.client().submit(obs(1))) as Record<string, any>).policyVersion).to.equal(1);
    });

    it("weightSync failures: connect() failing stops the server (ready rejects, queued callers hear); receive() failing keeps serving", async () => {
      const bad = fakeReceiver();
      const g = gate();
      bad.receiver.connect = async () => {
        await g.wait;
        throw new Error("trainer unreachable");
      };
      const st = kit.server();
      const s1 = serve(new InferenceServer(doubling, st, { weightSync: bad.receiver }).start());
      // ready() waits for connect(), held here: make sure the request finds the server otherwise.
      await kit.serversSubscribed();
      const queued = kit.client().submit(obs(1), { timeoutMs: 5_000 });
      await until(() => st.buffered === 1, 5_000, "request queued while connect() runs");
      g.open();
      const readyErr = await s1.ready().then(() => undefined, (e) => e);
      expect(readyErr).to.be.instanceOf(WeightSyncError);
      expect((readyErr as Error).message).to.match(/weightSync: connect\(\) failed: trainer unreachable; the server does not serve/);
      const queuedErr = await queued.then(() => undefined, (e) => e);
      expect(queuedErr).to.be.instanceOf(WeightSyncError);
      expect(s1.isRunning).to.equal(false);
      expect(s1.loopError).to.equal(readyErr);
      await s1.shutdown();
      servers.splice(servers.indexOf(s1), 1);

      const flaky = fakeReceiver();
      const s2 = serve(new InferenceServer(doubling, kit.server(), { weightSync: flaky.receiver }).start());
      await s2.ready();
      flaky.failNext(new Error("lost a chunk"));
      await until(() => s2.stats().weightSyncErrors === 1, 5_000, "receive failure counted");
      expect(s2.weightSyncError).to.be.instanceOf(WeightSyncError);
      expect((s2.weightSyncError as Error).message).to.match(/receive\(\) failed: lost a chunk; the server keeps serving/);
      expect(first((await kit.client().submit(obs(3))) as TensorRecord)).to.equal(6);
      expect(s2.policyVersion).to.equal(0);
      flaky.push({});
      await until(() => s2.policyVersion === 1, 5_000, "next weights applied");
      expect(s2.weightSyncError).to.equal(undefined);
    });

    it("clients(n) returns n working clients", async () => {
      const server = serve(new InferenceServer(doubling, kit.server(), { maxBatchSize: 16 }).start());
      await server.ready();
      const clients = server.clients(5);
      expect(clients).to.have.length(5);
      expect(new Set(clients).size).to.equal(5);
      const outs = (await Promise.all(clients.map((c, i) => c.call(obs(i))))) as TensorRecord[];
      expect(outs.map(first)).to.deep.equal([0, 2, 4, 6, 8]);
      expect(server.clients(0)).to.deep.equal([]);
      for (const bad of [-1, 1.5, "2", undefined]) {
        expect(() => server.clients(bad as number)).to.throw(InvalidOptionsError, /clients\(n\): n must be an integer >= 0/);
      }
    });
  });
}

describe("InferenceServer weight options are checked", () => {
  const model = (b: TensorBatch) => doubling(b);
  const make = (opts: object) => () => new InferenceServer(model, new InProcessTransport(), opts as never);
  const receiver = { initOnReceiver() {}, connect() {}, receive() {} };

  it("rejects unknown keys with a suggestion", () => {
    expect(make({ policy_version: 1 })).to.throw(InvalidOptionsError, /unknown option "policy_version".*did you mean "policyVersion"/);
    expect(make({ weightsync: receiver })).to.throw(InvalidOptionsError, /did you mean "weightSync"/);
  });

  it("rejects bad versions and version keys", () => {
    for (const bad of ["1", 1.5, -1, NaN, Infinity, 2 ** 53, null, true]) {
      expect(make({ policyVersion: bad }), String(bad)).to.throw(InvalidOptionsError, /policyVersion must be an integer >= 0/);
    }
    for (const bad of ["", "a..b", ".a", 5, [], ["a", ""], [1], { key: "a" }, "__proto__.x", ["constructor"]]) {
      expect(make({ policyVersionKey: bad }), JSON.stringify(bad)).to.throw(InvalidOptionsError, /policyVersionKey must be a key such as "policyVersion"/);
    }
    expect(make({ policyVersion: 0, policyVersionKey: null })).to.not.throw();
  });

  it("rejects a weightSync without the receiver's methods, and applyWeights without weightSync", () => {
    expect(make({ weightSync: { receive() {} } })).to.throw(InvalidOptionsError, /weightSync must be an object with initOnReceiver\(\), connect\(\), receive\(\)/);
    expect(make({ weightSync: receiver, weightSyncModelId: "" })).to.throw(InvalidOptionsError, /weightSyncModelId must be a non-empty string/);
    expect(make({ weightSync: receiver, applyWeights: "copy" })).to.throw(InvalidOptionsError, /applyWeights must be a function/);
    expect(make({ applyWeights: () => {} })).to.throw(InvalidOptionsError, /applyWeights applies what weightSync.receive\(\) returns.*pass weightSync too, or change the model with server.updateModel/);
  });

  it("updateModel before start() runs at once and bumps the version", async () => {
    const server = new InferenceServer(model, new InProcessTransport());
    expect(await server.updateModel(() => "done")).to.equal("done");
    expect(server.policyVersion).to.equal(1);
    expect(server.stats()).to.include({ policyVersion: 1, weightUpdates: 1 });
    // stats reset clears the counter, not the version (as TorchRL).
    server.stats({ reset: true });
    expect(server.stats()).to.include({ policyVersion: 1, weightUpdates: 0 });
  });
});
