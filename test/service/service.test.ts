import { expect } from "chai";
import { ClosedError, OverloadedError, RemoteError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { sessionInfo, type ServiceProxy } from "../../src/service/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { BrokenCtor, Indexed, WithSetup } from "../fixtures/replicas/more-actors.ts";
import { launchEcho } from "../fixtures/replicas/no-static-module.ts";
import { replicaPids } from "../helpers/replicas.ts";

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

// Ported from TorchForge's tests/unit_tests/test_service.py, on one service of 3 replicas where
// the cases allow (each replica is a process: starting them is the expensive part).
describe("services: routing, fanout, sessions (TorchForge test_service.py)", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("svc");
  let svc: ServiceProxy<Counter>;

  before(async () => {
    svc = await Counter.options({ numReplicas: 3, procs: 1, servers: testUrl(), namespace: ns, maxConcurrency: 4 }).asService(0);
  });

  after(async () => {
    await svc?.shutdown();
    expect(replicaPids(ns), "replica processes after shutdown").to.deep.equal([]);
  });

  it("runs every replica in its own process, none in the caller's", () => {
    const st = svc.status();
    expect(st.replicas).to.have.length(3);
    const pids = st.replicas.flatMap((r) => r.pids);
    expect(new Set(pids).size).to.equal(3);
    expect(pids).to.not.include(process.pid);
    expect(replicaPids(ns).sort()).to.deep.equal([...pids].sort());
    expect(st.replicas.every((r) => r.state === "healthy")).to.equal(true);
    expect(st.placement).to.equal("local"); // no agent in this namespace: the embedded default
  });

  it("sessionless calls spread over the replicas (least loaded, ties rotate)", async () => {
    const before = svc.status().replicas.map((r) => r.calls);
    for (let i = 0; i < 6; i++) await svc.incr();
    const after = svc.status().replicas.map((r) => r.calls);
    const delta = after.map((n, i) => n - before[i]!);
    expect(delta).to.deep.equal([2, 2, 2]);
    expect(svc.status().sessions).to.equal(0);
    // Arguments pass through as given (TorchForge: add_to_value(5, multiplier=2)).
    const v = await svc.addToValue.route(5, 2);
    expect(v).to.be.a("number").and.to.be.at.least(12);
  });

  it("fanout reaches every replica; route reaches one (broadcast vs choose)", async () => {
    const base = await svc.value.fanout();
    expect(base).to.have.length(3);
    expect(await svc.incr.fanout(1)).to.deep.equal(base.map((v) => v + 1));
    await svc.incr(100);
    const after = await svc.value.fanout();
    const diffs = after.map((v, i) => v - base[i]! - 1).sort((a, b) => a - b);
    expect(diffs).to.deep.equal([0, 0, 100]);
  });

  it("a session sticks to one replica; its calls see each other's state", async () => {
    const seen = await svc.session(async (s) => {
      const start = await s.value();
      const bound = sessionInfo(s)!.replica;
      expect(bound).to.be.a("number");
      const values = [await s.incr(), await s.incr(), await s.incr(), await s.incr()];
      expect(sessionInfo(s)!.replica).to.equal(bound);
      expect(svc.status().sessions).to.equal(1);
      return values.map((v) => v - start);
    });
    expect(seen).to.deep.equal([1, 2, 3, 4]);
    expect(svc.status().sessions, "sessions end with their callback").to.equal(0);
  });

  it("explicit sessions end on dispose; later calls are refused", async () => {
    const s = svc.session();
    await s.incr();
    expect(sessionInfo(s)!.ended).to.equal(false);
    await s[Symbol.asyncDispose]();
    expect(sessionInfo(s)!.ended).to.equal(true);
    try {
      await s.incr();
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(ClosedError);
    }
  });

  it("concurrent sessions bind to different replicas (least loaded) and stay there", async () => {
    const worker = async (n: number) =>
      svc.session(async (s) => {
        const start = await s.value();
        for (let i = 0; i < n; i++) await s.incr();
        return { delta: (await s.value()) - start, replica: sessionInfo(s)!.replica };
      });
    const results = await Promise.all([worker(2), worker(3), worker(4)]);
    expect(results.map((r) => r.delta)).to.deep.equal([2, 3, 4]);
    expect(new Set(results.map((r) => r.replica)).size).to.equal(3);
    expect(svc.status().sessions).to.equal(0);
  });

  it("mixes session and sessionless calls concurrently", async () => {
    const before = sum(svc.status().replicas.map((r) => r.calls));
    await svc.session(async (s) => {
      await Promise.all([s.incr(), s.incr(), svc.incr(), svc.incr()]);
      expect(svc.status().sessions).to.equal(1);
    });
    expect(sum(svc.status().replicas.map((r) => r.calls)) - before).to.equal(4);
  });

  it("a method's exception reaches the caller and is not a replica failure", async () => {
    const before = svc.status();
    try {
      await svc.failMe();
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(RemoteError);
      expect((err as RemoteError).remoteName).to.equal("RangeError");
      expect((err as Error).message).to.equal("I was asked to fail");
    }
    const after = svc.status();
    expect(after.replicas.map((r) => r.state)).to.deep.equal(["healthy", "healthy", "healthy"]);
    expect(after.replicas.map((r) => r.pids[0])).to.deep.equal(before.replicas.map((r) => r.pids[0]));
    expect(sum(after.replicas.map((r) => r.errors)) - sum(before.replicas.map((r) => r.errors))).to.equal(1);
    // The fanout results all share one call count: the failed call counted once, on one replica.
    expect(after.replicas.every((r) => r.restarts === 0)).to.equal(true);
  });

  it("reserved names stay reachable through endpoint()", async () => {
    expect(await svc.endpoint("value").fanout()).to.have.length(3);
  });
});

describe("services: lifecycle, registry, hooks", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("svl");
  let other: Services;

  before(async () => {
    other = await getServices({ namespace: ns, servers: testUrl() });
  });
  after(async () => {
    await other?.close();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("asService() with defaults: one replica, constructor args passed (test_as_service_default_configs)", async () => {
    const svc = await Counter.options({ servers: testUrl(), namespace: ns }).asService(42);
    try {
      const st = svc.status();
      expect(st.options.numReplicas).to.equal(1);
      expect(st.options.procs).to.equal(1);
      expect(await svc.value()).to.equal(42);

      // The registry and services are one concept: any worker finds it by name.
      expect(await other.list()).to.include("counter");
      const record = await other.describe("counter");
      expect(record?.kind).to.equal("service");
      expect(record?.className).to.equal("Counter");
      expect(record?.methods).to.include.members(["incr", "value", "whoami"]);
      const h = await other.get<Counter>("counter");
      expect(await h.incr(8)).to.equal(50);
      try {
        await h.failMe();
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(RemoteError);
      }
      // A second service of the same name is refused, with the way out.
      try {
        await Counter.options({ servers: testUrl(), namespace: ns }).asService(0);
        expect.fail("should have thrown");
      } catch (err) {
        expect((err as Error).message).to.match(/already registered/).and.match(/meshName/);
      }
    } finally {
      await svc.shutdown();
    }
    expect(await other.has("counter")).to.equal(false);
    expect(replicaPids(ns)).to.deep.equal([]);
    try {
      await svc.incr();
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(ClosedError);
    }
  });

  it("a registry remove() from another worker shuts the service down", async () => {
    const svc = await Counter.options({ servers: testUrl(), namespace: ns, meshName: "removable" }).asService(1);
    const pid = svc.status().replicas[0]!.pids[0]!;
    expect(await other.remove("removable")).to.equal(true);
    await until(() => svc.status().state === "stopped", 10_000, "service stopped");
    await until(() => !replicaPids(ns).includes(pid), 10_000, "replica process gone");
    expect(await other.has("removable")).to.equal(false);
  });

  it("asActor() launches one replica of procs processes with rank and size; Class.shutdown(actor) stops it", async () => {
    const a = await Counter.options({ procs: 2, servers: testUrl(), namespace: ns }).asActor();
    try {
      const ranks = await a.whoami.ranks();
      expect(ranks.map((r) => [r.rank, r.size])).to.deep.equal([
        [0, 2],
        [1, 2],
      ]);
      expect(new Set(ranks.map((r) => r.pid)).size).to.equal(2);
      // A routed call goes to every rank and returns rank 0's result.
      expect((await a.whoami()).rank).to.equal(0);
      expect(await a.incr(2)).to.equal(2);
      expect((await a.value.ranks())).to.deep.equal([2, 2]);
      expect(a.status().replicas[0]!.pids).to.have.length(2);
      expect(replicaPids(ns)).to.have.length(2);
    } finally {
      await Counter.shutdown(a);
    }
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("runs the overridable launch() and shutdown() hooks per replica", async () => {
    Indexed.stopped = [];
    const svc = await Indexed.options({ numReplicas: 2, servers: testUrl(), namespace: ns }).asService("r");
    try {
      expect((await svc.describe.fanout()).sort()).to.deep.equal(["r:0", "r:1"]);
    } finally {
      await svc.shutdown();
    }
    expect(Indexed.stopped.sort()).to.deep.equal([0, 1]);
  });

  it("finds an exported class without `static module` when launched from its own module", async () => {
    const svc = await launchEcho({ servers: testUrl(), namespace: ns, meshName: "echo" });
    try {
      expect(await svc.echo({ a: [1, 2] })).to.deep.equal({ a: [1, 2] });
    } finally {
      await svc.shutdown();
    }
  });

  it("awaits setup() before taking calls; a throwing constructor fails the launch with the user's error", async () => {
    const s = await WithSetup.options({ servers: testUrl(), namespace: ns }).asService();
    try {
      expect(await s.isReady()).to.equal(true);
    } finally {
      await s.shutdown();
    }
    try {
      await BrokenCtor.options({ servers: testUrl(), namespace: ns }).asService();
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(RemoteError);
      expect((err as Error).message).to.match(/replica 0 of "brokenctor" failed to start: bad constructor argument/);
      expect((err as RemoteError).remoteName).to.equal("TypeError");
    }
    expect(await other.has("brokenctor")).to.equal(false);
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("backpressure: OverloadedError (retryable) when every replica is saturated", async () => {
    const svc = await Counter.options({ servers: testUrl(), namespace: ns, meshName: "bp", numReplicas: 1, maxConcurrency: 1, maxPending: 1 }).asService();
    try {
      const running = [svc.slowIncr(300), svc.slowIncr(300)];
      try {
        await svc.incr();
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(OverloadedError);
        expect((err as OverloadedError).retryable).to.equal(true);
      }
      expect(await Promise.all(running)).to.deep.equal([1, 2]);
      expect(await svc.incr()).to.equal(3); // room again
    } finally {
      await svc.shutdown();
    }
  });

  it("shutdown finishes in-flight calls before stopping processes", async () => {
    const svc = await Counter.options({ servers: testUrl(), namespace: ns, meshName: "drain", maxConcurrency: 4 }).asService();
    const inflight = [svc.slowIncr(200), svc.slowIncr(200)];
    await new Promise((r) => setTimeout(r, 50));
    await svc.shutdown();
    expect((await Promise.all(inflight)).sort()).to.deep.equal([1, 2]);
    expect(replicaPids(ns)).to.deep.equal([]);
  });
});
