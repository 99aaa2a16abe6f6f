import { expect } from "chai";
import { currentCall, withOptions } from "../../src/call/index.ts";
import { createLocalBus } from "../../src/connection/index.ts";
import { CallTimeoutError, CancelledError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

/** Hears its call's abort through addAbortListener (no AbortSignal), as the Python executor does. */
class Listener {
  runs = 0;
  ended: string[] = [];
  heard: string[] = [];
  async hold(ms: number) {
    this.runs++;
    const call = currentCall();
    const how = await new Promise<string>((resolve) => {
      const t = setTimeout(() => resolve("finished"), ms);
      const listening = call.addAbortListener!((reason) => {
        clearTimeout(t);
        resolve(`aborted:${(reason as { code?: string }).code}`);
      });
      if (!listening) resolve("aborted already");
    });
    this.ended.push(how);
    return how;
  }
  /** A listener removed before the call ends is never called; a second one still is. */
  async removeOne(ms: number) {
    const call = currentCall();
    const removed = () => this.heard.push("removed");
    call.addAbortListener!(removed);
    call.addAbortListener!((reason) => this.heard.push(`kept:${(reason as { code?: string }).code}`));
    call.removeAbortListener!(removed);
    await new Promise((r) => setTimeout(r, ms));
    return "finished";
  }
  /** After the call aborted, addAbortListener says so and registers nothing. */
  async lateListener(ms: number) {
    const call = currentCall();
    await new Promise<void>((resolve) => call.addAbortListener!(() => resolve()));
    const again = call.addAbortListener!(() => this.heard.push("late"));
    this.heard.push(`late listener registered: ${again}`);
    await new Promise((r) => setTimeout(r, ms));
  }
}

for (const backend of ["nats", "local"] as const) {
  describe(`abort listeners of the call context (${backend})`, function () {
    this.timeout(30_000);
    let services: Services;
    let worker: Listener;

    before(async () => {
      services =
        backend === "nats"
          ? await getServices({ servers: testUrl(), namespace: uniqueNamespace("abl") })
          : await getServices({ backend: "local", localBus: createLocalBus(), namespace: uniqueNamespace("abl") });
      worker = new Listener();
      await services.registerInstance("listener", worker, { maxConcurrency: 4, maxPending: 8 });
    });
    after(() => services.close());

    it("outside a call, addAbortListener registers a listener that never fires", () => {
      const c = currentCall();
      expect(c.addAbortListener!(() => expect.fail("called"))).to.equal(true);
      c.removeAbortListener!(() => {});
    });

    it("the caller's cancel calls the listener at once, with the CancelledError", async () => {
      const ac = new AbortController();
      const n = worker.ended.length;
      const runs = worker.runs;
      const p = withOptions(await services.get<Listener>("listener"), { signal: ac.signal }).hold(10_000);
      await until(() => worker.runs > runs, 5_000, "the call to start");
      ac.abort();
      expect(await p.catch((e) => e)).to.be.instanceOf(CancelledError);
      await until(() => worker.ended.length > n, 2_000, "the listener to be called");
      expect(worker.ended[n]).to.equal("aborted:CANCELLED");
    });

    it("the deadline calls the listener, with no signal ever made", async () => {
      const n = worker.ended.length;
      const t0 = Date.now();
      expect(await withOptions(await services.get<Listener>("listener"), { timeoutMs: 200 }).hold(5_000).catch((e) => e)).to.be.instanceOf(CallTimeoutError);
      await until(() => worker.ended.slice(n).includes("aborted:CALL_TIMEOUT"), 2_000, "the listener to hear the deadline");
      expect(Date.now() - t0).to.be.below(1_500);
    });

    it("a removed listener is not called; the others are", async () => {
      worker.heard.length = 0;
      const ac = new AbortController();
      const p = withOptions(await services.get<Listener>("listener"), { signal: ac.signal }).removeOne(10_000);
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      await p.catch(() => {});
      await until(() => worker.heard.length > 0, 2_000, "the kept listener to be called");
      expect(worker.heard).to.deep.equal(["kept:CANCELLED"]);
    });

    it("once the call is aborted, addAbortListener returns false and registers nothing", async () => {
      worker.heard.length = 0;
      const ac = new AbortController();
      const p = withOptions(await services.get<Listener>("listener"), { signal: ac.signal }).lateListener(100);
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      await p.catch(() => {});
      await until(() => worker.heard.length > 0, 2_000, "the method to try a late listener");
      await new Promise((r) => setTimeout(r, 150));
      expect(worker.heard).to.deep.equal(["late listener registered: false"]);
    });
  });
}
