import { expect } from "chai";
import { currentCall, withOptions } from "../../src/call/index.ts";
import { createLocalBus } from "../../src/connection/index.ts";
import { CallTimeoutError, CancelledError, InvalidOptionsError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

/** A plain class using currentCall(): no base class needed. */
class Worker {
  runs = 0;
  ended: string[] = [];
  context() {
    const c = currentCall();
    return { callId: c.callId, method: c.method, remainingMs: c.deadline - Date.now(), metadata: { ...c.metadata } };
  }
  async hold(ms: number) {
    this.runs++;
    const { signal } = currentCall();
    const how = await new Promise<string>((resolve) => {
      const t = setTimeout(() => resolve("finished"), ms);
      signal.addEventListener("abort", () => (clearTimeout(t), resolve(`aborted:${(signal.reason as { code?: string }).code}:${Date.now()}`)), { once: true });
    });
    this.ended.push(how);
    return how;
  }
  report() {
    return { runs: this.runs, ended: this.ended };
  }
}

/** Calls another service while serving one: the nested call inherits deadline, signal, metadata. */
class Caller {
  constructor(private readonly services: Services) {}
  async viaWorker() {
    const w = await this.services.get<Worker>("worker");
    return { outer: currentCall().deadline - Date.now(), inner: await w.context() };
  }
}

for (const backend of ["nats", "local"] as const) {
  describe(`call context and cancellation (${backend})`, function () {
    this.timeout(30_000);
    let services: Services;
    let worker: Worker;

    before(async () => {
      services =
        backend === "nats"
          ? await getServices({ servers: testUrl(), namespace: uniqueNamespace("ctx") })
          : await getServices({ backend: "local", localBus: createLocalBus(), namespace: uniqueNamespace("ctx") });
      worker = new Worker();
      await services.registerInstance("worker", worker, { maxConcurrency: 1, maxPending: 8 });
      await services.register("caller", Caller, services);
    });
    after(() => services.close());

    it("a method sees its deadline, call id, method and metadata through currentCall()", async () => {
      const h = withOptions(await services.get<Worker>("worker"), { timeoutMs: 700, metadata: { tenant: "a", trace: "t-1" } });
      const c = await h.context();
      expect(c.callId).to.be.a("string").with.length.above(5);
      expect(c.method).to.equal("context");
      expect(c.remainingMs).to.be.within(400, 700);
      expect(c.metadata).to.deep.equal({ tenant: "a", trace: "t-1" });
      const again = await h.context();
      expect(again.callId).to.not.equal(c.callId);
    });

    it("outside a call, currentCall() has no deadline and a signal that never fires", () => {
      const c = currentCall();
      expect(c.deadline).to.equal(Infinity);
      expect(c.signal.aborted).to.equal(false);
      expect(c.metadata).to.deep.equal({});
    });

    it("withOptions keeps the handle's type, stacks, and rejects bad options", async () => {
      const h = await services.get<Worker>("worker");
      const a = withOptions(h, { metadata: { a: "1" } });
      const b = withOptions(a, { timeoutMs: 300 });
      const c = await b.context();
      expect(c.metadata).to.deep.equal({ a: "1" });
      expect(c.remainingMs).to.be.at.most(300);
      expect(() => withOptions(h, { timeout: 5 } as never)).to.throw(InvalidOptionsError, /did you mean "timeoutMs"/);
      expect(() => withOptions(h, { timeoutMs: NaN })).to.throw(InvalidOptionsError);
      expect(() => withOptions(h, { metadata: { n: 1 } as never })).to.throw(InvalidOptionsError, /must be a string/);
      expect(() => withOptions(h, { signal: {} as never })).to.throw(InvalidOptionsError, /AbortSignal/);
      expect(() => withOptions({}, {})).to.throw(InvalidOptionsError, /takes a handle/);
    });

    it("a nested call never outlives the call it serves, and carries its metadata", async () => {
      const h = withOptions(await services.get<Caller>("caller"), { timeoutMs: 600, metadata: { tenant: "b" } });
      const r = await h.viaWorker();
      expect(r.outer).to.be.at.most(600);
      expect(r.inner.remainingMs).to.be.at.most(r.outer + 5);
      expect(r.inner.metadata).to.deep.equal({ tenant: "b" });
    });

    it("abort() rejects at once with CancelledError, and the running method's signal fires", async () => {
      const ac = new AbortController();
      const h = withOptions(await services.get<Worker>("worker"), { signal: ac.signal });
      const p = h.hold(10_000);
      await until(() => worker.runs === 1, 5_000, "the call to start");
      const t0 = Date.now();
      ac.abort();
      const err = await p.catch((e) => e);
      const rejectedIn = Date.now() - t0;
      expect(err).to.be.instanceOf(CancelledError);
      expect(err.code).to.equal("CANCELLED");
      expect(err.retryable).to.equal(false);
      expect(rejectedIn).to.be.below(50);
      await until(() => worker.ended.length === 1, 2_000, "the method to see its signal");
      const [how, at] = [worker.ended[0]!.split(":")[1], Number(worker.ended[0]!.split(":")[2])];
      expect(how).to.equal("CANCELLED");
      expect(at - t0).to.be.below(200);
    });

    it("a queued call whose signal aborts never runs and frees its place", async () => {
      const before = worker.runs;
      const blocker = new AbortController();
      const h = await services.get<Worker>("worker");
      const first = withOptions(h, { signal: blocker.signal }).hold(10_000); // holds the only slot
      await until(() => worker.runs === before + 1, 5_000, "the first call to run");
      const queued = new AbortController();
      const second = withOptions(h, { signal: queued.signal }).hold(10_000);
      await new Promise((r) => setTimeout(r, 50)); // let it reach the host's queue
      queued.abort();
      expect(await second.catch((e) => e)).to.be.instanceOf(CancelledError);
      blocker.abort();
      await first.catch(() => {});
      // A later call runs; the cancelled one never did.
      expect(await withOptions(h, { timeoutMs: 2_000 }).hold(1)).to.equal("finished");
      expect(worker.runs).to.equal(before + 2);
    });

    it("the deadline aborts a running method's signal and fails the caller with CallTimeoutError", async () => {
      const h = withOptions(await services.get<Worker>("worker"), { timeoutMs: 200 });
      const n = worker.ended.length;
      expect(await h.hold(5_000).catch((e) => e)).to.be.instanceOf(CallTimeoutError);
      // Earlier tests' cancelled calls may still be recording how they ended: look for ours.
      await until(() => worker.ended.slice(n).some((e) => /^aborted:CALL_TIMEOUT/.test(e)), 2_000, "the method to see its deadline");
    });

    it("an already-aborted signal fails the call before anything is sent", async () => {
      const ac = new AbortController();
      ac.abort();
      const runs = worker.runs;
      expect(await withOptions(await services.get<Worker>("worker"), { signal: ac.signal }).hold(1).catch((e) => e)).to.be.instanceOf(CancelledError);
      expect(worker.runs).to.equal(runs);
    });
  });
}
