import { expect } from "chai";
import {
  CallTimeoutError,
  ConnectionLostError,
  getServices,
  startNatsServer,
  type NatsServerProcess,
  type Services,
} from "../../src/index.ts";
import { CounterService } from "../fixtures/services.ts";
import { uniqueNamespace, until } from "../helpers/nats.ts";

// These tests own their server: they kill and restart it.
describe("server restarts and connection loss (nats)", function () {
  this.timeout(60_000);
  let server: NatsServerProcess;
  let host: Services;
  let client: Services;
  const ns = uniqueNamespace();
  beforeEach(async () => {
    server = await startNatsServer();
    host = await getServices({ namespace: ns, servers: server.url, reconnectTimeWaitMs: 50 });
    client = await getServices({ namespace: ns, servers: server.url, reconnectTimeWaitMs: 50 });
  });
  afterEach(async () => {
    await client.close();
    await host.close();
    await server.stop();
  });

  it("keeps the registry (file storage) across a server restart, and calls resume", async () => {
    await host.register("counter", CounterService, 1);
    const h = await client.get<CounterService>("counter", { timeoutMs: 1_000 });
    expect(await h.increment()).to.equal(2);
    await server.kill("SIGKILL");
    await server.restart();
    const back = Date.now();
    await until(async () => (await h.increment().then(() => true, () => false)), 10_000, "calls to resume");
    expect(Date.now() - back).to.be.lessThan(2_000);
    expect(await client.list()).to.deep.equal(["counter"]);
    expect(await h.get_count()).to.be.greaterThan(2);
  });

  it("calls during a disconnect fail with a typed retryable error by their deadline, never hang", async () => {
    await host.register("counter", CounterService);
    const h = await client.get<CounterService>("counter", { timeoutMs: 300 });
    await server.kill("SIGKILL");
    const t0 = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => h.increment()));
    expect(Date.now() - t0).to.be.lessThan(300 + 500);
    for (const r of results) {
      expect(r.status).to.equal("rejected");
      const e = (r as PromiseRejectedResult).reason;
      expect(e).to.satisfy((x: unknown) => x instanceof CallTimeoutError || x instanceof ConnectionLostError);
      expect(e.retryable).to.equal(true);
    }
    await server.restart();
    await until(async () => (await h.increment().then(() => true, () => false)), 10_000, "calls to resume");
  });

  it("in-flight calls fail fast with ConnectionLostError when the connection drops", async () => {
    class Slow {
      wait(ms: number) {
        return new Promise((r) => setTimeout(() => r(ms), ms));
      }
    }
    await host.register("slow", Slow);
    const h = await client.get<Slow>("slow", { timeoutMs: 20_000 });
    const call = h.wait(5_000).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50)); // let the request reach the host
    const t0 = Date.now();
    await server.kill("SIGKILL");
    const err = await call;
    expect(err).to.be.instanceOf(ConnectionLostError);
    expect(Date.now() - t0).to.be.lessThan(3_000);
    await server.restart();
  });
});
