import { expect } from "chai";
import { fileURLToPath } from "node:url";
import { connectBus, type BusConnection } from "../../src/connection/index.ts";
import { ServiceUnavailableError } from "../../src/errors/index.ts";
import { InferenceServer, InferenceServerLostError, NatsTransport, type TensorRecord } from "../../src/inference/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { isRunning, killAllWorkers, startWorker } from "../helpers/processes.ts";
import { doubling } from "./helpers.ts";

const WORKER = fileURLToPath(new URL("./workers/inference-worker.ts", import.meta.url));

describe("inference across OS processes (nats)", function () {
  this.timeout(40_000);
  let conn: BusConnection;
  let ns: string;
  beforeEach(async () => {
    ns = uniqueNamespace("inf");
    conn = await connectBus({ servers: testUrl() });
  });
  afterEach(async () => {
    await killAllWorkers();
    await conn.close();
  });

  it("serves clients from several processes, batching across them, each caller getting its own result", async () => {
    const transport = new NatsTransport({ connection: conn, namespace: ns, name: "policy" });
    const model = async (b: Parameters<typeof doubling>[0]) => (await new Promise((r) => setTimeout(r, 2)), doubling(b));
    await using server = new InferenceServer(model, transport, { maxBatchSize: 64 }).start();
    await server.ready();
    const workers = [0, 1, 2].map((worker) => startWorker("clients", { url: testUrl(), namespace: ns, concurrency: 8, calls: 25, worker }, WORKER));
    const reports = await Promise.all(workers.map((w) => w.next<{ ok: number; wrong: number; errors: string[] }>(30_000)));
    for (const r of reports) expect(r).to.deep.equal({ ok: 200, wrong: 0, errors: [] });
    const s = server.stats();
    expect(s.requests).to.equal(600);
    expect(s.meanBatchSize).to.be.above(1); // 24 callers in 3 processes shared model calls
  });

  it("fails the calls held by a SIGKILLed server within the lease, not at the deadline", async () => {
    const w = startWorker("server", { url: testUrl(), namespace: ns, announce: true, hang: true, maxBatchSize: 1 }, WORKER);
    const { pid } = await w.next<{ pid: number }>();
    const client = new NatsTransport<TensorRecord, TensorRecord>({ connection: conn, namespace: ns, name: "policy", timeoutMs: 20_000, leaseMs: 300 });
    // One call in the (hung) model, two buffered behind it: all three are on the doomed server.
    const calls = [1, 2, 3].map((v) => client.submit({ observation: new Float32Array([v]) }).catch((e: Error) => e));
    expect(await w.next()).to.deep.equal({ batch: 1 });
    // Held well past the lease: renewals keep healthy-but-slow calls alive.
    await new Promise((r) => setTimeout(r, 700));
    w.child.kill("SIGKILL");
    await w.exited;
    const killedAt = performance.now();
    expect(isRunning(pid)).to.equal(false);
    const errors = await Promise.all(calls);
    const failedAfterMs = performance.now() - killedAt;
    for (const e of errors) {
      expect(e).to.be.instanceOf(InferenceServerLostError);
      expect((e as InferenceServerLostError).retryable).to.equal(true);
    }
    expect(failedAfterMs).to.be.below(1_500); // lease 300 ms (+ check period), deadline 20 s
    // With no server left, NATS answers no-responders: new calls fail at once.
    const t0 = performance.now();
    const late = await client.submit({ observation: new Float32Array([4]) }).catch((e: Error) => e);
    expect(late).to.be.instanceOf(ServiceUnavailableError);
    expect(performance.now() - t0).to.be.below(1_000);
    await client.close();
  });

  it("reads renewals that arrived while the client's event loop was blocked before judging leases", async () => {
    const w = startWorker("server", { url: testUrl(), namespace: ns, delayMs: 500 }, WORKER);
    await w.next();
    const client = new NatsTransport<TensorRecord, TensorRecord>({ connection: conn, namespace: ns, name: "policy", leaseMs: 100 });
    const call = client.submit({ observation: new Float32Array([5]) });
    await new Promise((r) => setTimeout(r, 20));
    const end = Date.now() + 350; // the server keeps renewing; renewals wait in the socket
    while (Date.now() < end);
    expect((await call).action).to.deep.equal(new Float32Array([10]));
    await client.close();
  });

  it("keeps serving through the surviving server when one of two server processes is killed", async () => {
    const a = startWorker("server", { url: testUrl(), namespace: ns, delayMs: 5 }, WORKER);
    const b = startWorker("server", { url: testUrl(), namespace: ns, delayMs: 5 }, WORKER);
    await Promise.all([a.next(), b.next()]);
    const client = new NatsTransport<TensorRecord, TensorRecord>({ connection: conn, namespace: ns, name: "policy", timeoutMs: 10_000, leaseMs: 300 });
    a.child.kill("SIGKILL");
    await a.exited;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => client.submit({ observation: new Float32Array([i]) })));
    results.forEach((r, i) => expect((r.action as Float32Array)[0]).to.equal(2 * i));
    await client.close();
    await b.stop();
  });
});
