import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { connectBus, type BusConnection } from "../../src/connection/index.ts";
import { CodecError, errorFromWire, InvalidOptionsError, type WireError } from "../../src/errors/index.ts";
import { InferenceServer, InferenceShutdownError, NatsTransport, type TensorBatch, type TensorRecord } from "../../src/inference/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { doubling, obs } from "./helpers.ts";

const slow = (ms: number) => async (b: TensorBatch) => (await new Promise((r) => setTimeout(r, ms)), doubling(b));

describe("NatsTransport", function () {
  this.timeout(15_000);
  let serverConn: BusConnection;
  let clientConn: BusConnection;
  let ns: string;
  const cleanup: (() => Promise<unknown>)[] = [];
  beforeEach(async () => {
    ns = uniqueNamespace("inf");
    serverConn = await connectBus({ servers: testUrl() });
    clientConn = await connectBus({ servers: testUrl() });
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await Promise.all([serverConn.close(), clientConn.close()]);
  });
  const transport = (connection: BusConnection | NatsConnection, o: object = {}) => {
    const t = new NatsTransport<TensorRecord, TensorRecord>({ connection, namespace: ns, name: "policy", ...o });
    cleanup.push(() => t.close());
    return t;
  };
  const start = async (model: (b: TensorBatch) => unknown, t: NatsTransport<TensorRecord, TensorRecord>, o: object = {}) => {
    const s = new InferenceServer(model as (b: TensorBatch) => Promise<ReturnType<typeof doubling>>, t, o).start();
    cleanup.push(() => s.shutdown());
    await s.ready();
    return s;
  };

  it("accepts a raw nats.js connection, which it leaves open", async () => {
    const nc = await connect({ servers: testUrl() });
    try {
      await start(doubling, transport(nc));
      const client = transport(nc);
      const r = await client.submit(obs(1.5, -2));
      expect(r.action).to.deep.equal(new Float32Array([3, -4]));
      await client.close();
      expect(nc.isClosed()).to.equal(false);
    } finally {
      for (const c of cleanup.splice(0).reverse()) await c();
      await nc.close();
    }
  });

  it("shares the load between servers of one name (queue group)", async () => {
    const a = await start(slow(10), transport(serverConn));
    const b = await start(slow(10), transport(serverConn));
    const client = transport(clientConn);
    // Requests of one tick leave as one message (coalesced) to one server: 16 ticks of 4 are
    // 16 messages, which the queue group spreads.
    const calls: Promise<unknown>[] = [];
    for (let wave = 0; wave < 16; wave++) {
      for (let i = 0; i < 4; i++) calls.push(client.submit(obs(wave * 4 + i)));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(calls);
    expect(a.stats().requests + b.stats().requests).to.equal(64);
    expect(a.stats().requests).to.be.above(0);
    expect(b.stats().requests).to.be.above(0);
  });

  it("coalesces a client's requests of one tick into one message and answers them in combined replies", async () => {
    const server = await start(slow(20), transport(serverConn), { maxBatchSize: 64 });
    const spy = await connect({ servers: testUrl() });
    cleanup.push(() => spy.close());
    const messages: number[] = [];
    let combined = 0;
    spy.subscribe(subjectsFor(ns).inference("policy"), { callback: (_e, m) => void messages.push(Number(m.headers?.get("Ab-Batch") || 1)) });
    spy.subscribe("_INBOX.>", { callback: (_e, m) => void (m.subject.endsWith(".0") && combined++) });
    await spy.flush();
    const client = transport(clientConn);
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => client.submit(obs(i))));
    expect(results.map((r) => (r.action as Float32Array)[0])).to.deep.equal(Array.from({ length: 32 }, (_, i) => 2 * i));
    await until(() => messages.length > 0 && combined > 0);
    expect(messages).to.deep.equal([32]);
    // One message in, so the server's first batch held all 32 (nothing waited for a second).
    expect(server.stats().batches).to.equal(1);
  });

  it("renews the lease of a call held longer than leaseMs, so a slow batch is not taken for a dead server", async () => {
    await start(slow(500), transport(serverConn));
    const client = transport(clientConn, { leaseMs: 100 });
    const r = await client.submit(obs(4));
    expect(r.action).to.deep.equal(new Float32Array([8]));
  });

  it("does not take its own stalled event loop for a dead server (server in the same process)", async () => {
    await start(slow(400), transport(serverConn));
    const client = transport(clientConn, { leaseMs: 100 });
    const call = client.submit(obs(5));
    await new Promise((r) => setTimeout(r, 20));
    const end = Date.now() + 300; // neither side can renew or read renewals meanwhile
    while (Date.now() < end);
    expect((await call).action).to.deep.equal(new Float32Array([10]));
  });

  it("on graceful shutdown of one of two servers, no call is lost or left to its deadline", async () => {
    const leaving = await start(slow(2), transport(serverConn));
    await start(slow(2), transport(serverConn));
    const client = transport(clientConn, { timeoutMs: 5_000, leaseMs: 2_000 });
    const settled: (string | number)[] = [];
    const waves = (async () => {
      for (let wave = 0; wave < 20; wave++) {
        await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            client.submit(obs(wave * 10 + i)).then(
              (r) => settled.push((r.action as Float32Array)[0]! / 2),
              (e: Error) => settled.push(e.name),
            ),
          ),
        );
      }
    })();
    await until(() => settled.length >= 30, 5_000, "traffic");
    const t0 = performance.now();
    await leaving.shutdown();
    expect(performance.now() - t0).to.be.below(2_000);
    await waves;
    expect(settled).to.have.length(200);
    const failures = settled.filter((s) => typeof s === "string");
    expect(failures.every((f) => f === InferenceShutdownError.name), `failures: ${failures.join(", ")}`).to.equal(true);
  });

  it("answers a malformed request with CodecError instead of ignoring it", async () => {
    await start(doubling, transport(serverConn));
    const subject = subjectsFor(ns).inference("policy");
    const bytes = await clientConn.transport.request(subject, clientConn.codec.encode({ not: "a request" }), 2_000);
    const [kind, wire] = clientConn.codec.decode<[number, WireError]>(bytes);
    expect(kind).to.equal(1);
    expect(errorFromWire(wire)).to.be.instanceOf(CodecError);
  });

  it("answers with CodecError when a result cannot cross the wire, and keeps serving", async () => {
    let mode = "function";
    const model = async (items: unknown[]) => {
      if (mode === "function") return items.map(() => ({ f: () => 1 }));
      if (mode === "bad-details") throw new InferenceShutdownError("odd failure", { details: { f: () => 1 } });
      return items;
    };
    await start(model as never, transport(serverConn), { collate: (items: unknown[]) => items });
    const client = transport(clientConn);
    const e1 = await client.submit(obs(1)).catch((e: Error) => e);
    expect(e1).to.be.instanceOf(CodecError);
    expect((e1 as Error).message).to.match(/functions cannot be sent/);
    mode = "bad-details";
    const e2 = await client.submit(obs(1)).catch((e: Error) => e);
    expect(e2).to.be.instanceOf(InferenceShutdownError);
    expect((e2 as Error).message).to.equal("odd failure");
    mode = "ok";
    expect((await client.submit(obs(3))).observation).to.deep.equal(new Float32Array([3]));
  });

  it("validates its options with messages that name the fix", () => {
    expect(() => new NatsTransport({ connection: {} as BusConnection, namespace: ns, name: "p" })).to.throw(InvalidOptionsError, /connectBus/);
    expect(() => new NatsTransport({ connection: clientConn, namespace: ns, name: "p", leaseMs: 5 })).to.throw(InvalidOptionsError, /leaseMs must be a number of milliseconds in 20\.\./);
    expect(() => new NatsTransport({ connection: clientConn, namespace: ns, name: "p", timeout: 5 } as never)).to.throw(InvalidOptionsError, /unknown option "timeout"/);
    expect(() => new NatsTransport({ connection: clientConn, namespace: ns, name: "a.b" })).to.throw(/invalid inference server name/);
  });

  it("fails calls in flight with ClosedError when the client transport closes", async () => {
    await start(slow(1_000), transport(serverConn));
    const client = new NatsTransport({ connection: clientConn, namespace: ns, name: "policy" });
    const call = client.submit(obs(1)).catch((e: Error) => e);
    await until(() => client.inFlight === 1, 2_000, "in flight");
    await client.close();
    expect((await call as Error).name).to.equal("ClosedError");
    await client.close(); // idempotent
  });
});
