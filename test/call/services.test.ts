import { expect } from "chai";
import { withOptions } from "../../src/call/index.ts";
import { CallTimeoutError, CancelledError, ReplicaCrashedError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import type { ServiceProxy } from "../../src/service/index.ts";
import { CallProbe } from "../fixtures/replicas/context-actor.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

// The call path through replicas: service proxy -> replica, and registry handle -> forwarder ->
// controller -> replica. Deadlines, cancellation, metadata and streams must cross every hop.
describe("call context, cancellation and streams through services", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("callsvc");
  let svc: ServiceProxy<CallProbe>;
  let services: Services;

  before(async () => {
    svc = await CallProbe.options({ numReplicas: 2, maxConcurrency: 4, maxTaskRetries: 2, timeoutMs: 30_000, servers: testUrl(), namespace: ns }).asService();
    services = await getServices({ servers: testUrl(), namespace: ns });
  });
  after(async () => {
    await services?.close();
    await svc?.shutdown();
  });

  const totalEnded = async () => (await svc.report.fanout()).flatMap((r) => r.ended);

  it("the caller's deadline and metadata reach the replica through the forwarder (no hop extends it)", async () => {
    const h = withOptions(await services.get<CallProbe>("callprobe"), { timeoutMs: 400, metadata: { trace: "abc" } });
    const c = await h.context();
    expect(c.remainingMs).to.be.within(1, 400);
    expect(c.metadata).to.deep.equal({ trace: "abc" });
  });

  it("a registry call that outlives its caller's deadline fails at that deadline, not the service's, even with maxTaskRetries", async () => {
    const h = withOptions(await services.get<CallProbe>("callprobe"), { timeoutMs: 300 });
    const t0 = Date.now();
    const err = await h.hold(5_000).catch((e) => e);
    expect(err).to.be.instanceOf(CallTimeoutError);
    expect(Date.now() - t0).to.be.below(1_500);
    // The replica's method was stopped at that deadline, not 30 s later: by its own deadline
    // (CALL_TIMEOUT) or by the forwarder's, which cancels what it relayed (CANCELLED).
    await until(async () => (await totalEnded()).some((e) => /^aborted:(CALL_TIMEOUT|CANCELLED)/.test(e) && Number(e.split(":")[2]) - t0 < 1_000), 3_000, "the replica to see the deadline");
  });

  it("cancel through the service proxy reaches the running method on the replica", async () => {
    const ac = new AbortController();
    const p = withOptions(svc, { signal: ac.signal }).hold(10_000);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    ac.abort();
    expect(await p.catch((e) => e)).to.be.instanceOf(CancelledError);
    await until(async () => (await totalEnded()).some((e) => e.startsWith("aborted:CANCELLED") && Number(e.split(":")[2]) - t0 < 500), 3_000, "the replica's signal");
  });

  it("cancel through a registry handle crosses the forwarder and the controller", async () => {
    const before = (await totalEnded()).filter((e) => e.startsWith("aborted:CANCELLED")).length;
    const ac = new AbortController();
    const p = withOptions(await services.get<CallProbe>("callprobe"), { signal: ac.signal }).hold(10_000);
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    expect(await p.catch((e) => e)).to.be.instanceOf(CancelledError);
    await until(async () => (await totalEnded()).filter((e) => e.startsWith("aborted:CANCELLED")).length === before + 1, 3_000, "the replica's signal");
  });

  it("withOptions works on endpoint forms and sessions", async () => {
    const all = await withOptions(svc.context.fanout, { metadata: { k: "fan" } })();
    expect(all.map((c) => c.metadata.k)).to.deep.equal(["fan", "fan"]);
    await svc.session(async (s) => {
      const c = await withOptions(s, { timeoutMs: 250 }).context();
      expect(c.remainingMs).to.be.at.most(250);
    });
  });

  it("streams through the service proxy, a registry handle and a session", async () => {
    const viaProxy: number[] = [];
    for await (const x of svc.count(100)) viaProxy.push(x.i);
    expect(viaProxy).to.deep.equal([...Array(100).keys()]);
    const h = await services.get<CallProbe>("callprobe");
    const viaRegistry: number[] = [];
    for await (const x of h.count(50)) viaRegistry.push(x.i);
    expect(viaRegistry).to.have.length(50);
    await svc.session(async (s) => {
      const n: number[] = [];
      for await (const x of s.forever(1)) if (n.push(x) === 20) break;
      expect(n).to.have.length(20);
    });
  });

  it("a replica that dies mid-stream ends the stream with ReplicaCrashedError, not a hang", async () => {
    const it = svc.forever(20)[Symbol.asyncIterator]();
    await it.next();
    const pids = (await svc.pid.fanout()) as number[];
    // Whichever replica serves the stream (the router chose), killing every replica kills it.
    const err = await (async () => {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      for (;;) await it.next();
    })().catch((e) => e);
    expect(err).to.be.instanceOf(ReplicaCrashedError);
    // The service restarts its replicas.
    await until(() => svc.status().replicas.every((r) => r.state === "healthy"), 20_000, "replicas to restart");
  });
});
