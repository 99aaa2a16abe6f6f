import { expect } from "chai";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReplicaCrashedError, ServiceUnavailableError } from "../../src/errors/index.ts";
import { SessionLostError, sessionInfo, type ServiceProxy } from "../../src/service/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { CrashOnStart } from "../fixtures/replicas/more-actors.ts";
import { isAlive, replicaPids } from "../helpers/replicas.ts";

const settle = <T>(p: Promise<T>) => p.then(() => "ok" as const, (e: Error) => e);

/** Calls that keep every replica busy, as a load generator would. */
function load(svc: ServiceProxy<Counter>, n: number): Promise<("ok" | Error)[]> {
  return Promise.all(Array.from({ length: n }, () => settle(svc.slowIncr(30))));
}

describe("services: replica failure, restart and retries", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("svf");
  const live: ServiceProxy<any>[] = [];
  const launch = async <T>(p: Promise<ServiceProxy<T>>) => {
    const s = await p;
    live.push(s);
    return s;
  };

  after(async () => {
    await Promise.all(live.map((s) => s.shutdown()));
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("SIGKILL under load: detected within 1 s, no call hangs, calls fail with retryable ReplicaCrashedError, restart within 2 s", async () => {
    const svc = await launch(Counter.options({ numReplicas: 3, maxConcurrency: 4, servers: testUrl(), namespace: ns, meshName: "kill0", timeoutMs: 30_000 }).asService());
    const victim = svc.status().replicas[1]!;
    const pid = victim.pids[0]!;
    const t0 = Date.now();
    const calls = load(svc, 60);
    await until(() => svc.status().replicas[1]!.inflight > 0, 5_000, "calls in flight on the victim");
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    await until(() => svc.status().replicas[1]!.state !== "healthy", 1_000, "crash detected within 1 s");
    const results = await calls;
    // Nothing waited for its 30 s deadline.
    expect(Date.now() - t0).to.be.below(15_000);
    const failures = results.filter((r): r is Error => r !== "ok");
    expect(failures.length).to.be.above(0);
    for (const f of failures) {
      expect(f).to.be.instanceOf(ReplicaCrashedError);
      expect((f as ReplicaCrashedError).retryable).to.equal(true);
    }
    await until(() => svc.status().replicas[1]!.state === "healthy", 2_000, "restart within 2 s");
    const restarted = svc.status().replicas[1]!;
    expect(Date.now() - killedAt).to.be.below(2_000 + 500);
    expect(restarted.restarts).to.equal(1);
    expect(restarted.pids[0]).to.not.equal(pid);
    expect(restarted.lastError).to.match(/SIGKILL/);
    expect(isAlive(pid)).to.equal(false);
    // The restarted replica was constructed again (TorchForge: the counter starts over).
    expect((await svc.value.fanout()).length).to.equal(3);
  });

  it("with maxTaskRetries 1, no call fails when a replica is killed under load", async () => {
    const svc = await launch(Counter.options({ numReplicas: 3, maxConcurrency: 4, maxTaskRetries: 1, servers: testUrl(), namespace: ns, meshName: "kill1" }).asService());
    const pid = svc.status().replicas[0]!.pids[0]!;
    const calls = load(svc, 60);
    await until(() => svc.status().replicas[0]!.inflight > 0, 5_000, "calls in flight on the victim");
    process.kill(pid, "SIGKILL");
    const results = await calls;
    expect(results.filter((r) => r !== "ok")).to.deep.equal([]);
    await until(() => svc.status().replicas[0]!.state === "healthy", 10_000, "restarted");
  });

  it("user exceptions are never retried", async () => {
    const svc = await launch(Counter.options({ numReplicas: 2, maxTaskRetries: 3, servers: testUrl(), namespace: ns, meshName: "noretry" }).asService());
    const before = svc.status().replicas.reduce((n, r) => n + r.calls, 0);
    const err = await settle(svc.failMe());
    expect(err).to.be.instanceOf(Error).and.not.be.instanceOf(ReplicaCrashedError);
    expect(svc.status().replicas.reduce((n, r) => n + r.calls, 0) - before).to.equal(1);
  });

  it("a session on a replica that died fails with SessionLostError; with rebind it moves on", async () => {
    const svc = await launch(Counter.options({ numReplicas: 2, servers: testUrl(), namespace: ns, meshName: "sess" }).asService());
    const loose = svc.session({ rebind: true });
    const sticky = svc.session();
    await loose.incr();
    await sticky.incr();
    const x = sessionInfo(loose)!.replica!;
    const y = sessionInfo(sticky)!.replica!;
    expect(x).to.not.equal(y); // sessions bind to the replica with fewer sessions
    const kill = async (i: number) => {
      process.kill(svc.status().replicas[i]!.pids[0]!, "SIGKILL");
      await until(() => svc.status().replicas[i]!.state !== "healthy", 2_000, "crash detected");
    };

    await kill(x);
    expect(await loose.incr()).to.equal(2); // rebound to y, which the sticky session incremented once
    expect(sessionInfo(loose)!.replica).to.equal(y);
    expect(await sticky.incr()).to.equal(3);

    await kill(y);
    const lost = await settle(sticky.incr());
    expect(lost).to.be.instanceOf(SessionLostError);
    expect((lost as Error).message).to.match(/state it held is lost/).and.match(/rebind: true/);
    expect(await settle(sticky.value()), "stays lost").to.be.instanceOf(SessionLostError);
    await sticky[Symbol.asyncDispose]();
    await loose[Symbol.asyncDispose]();
  });

  it("an in-flight call of a crashed single replica fails fast; the next call waits for the restart", async () => {
    const svc = await launch(Counter.options({ servers: testUrl(), namespace: ns, meshName: "single" }).asService(5));
    const pid = svc.status().replicas[0]!.pids[0]!;
    const slow = settle(svc.slowIncr(20_000));
    await until(() => svc.status().replicas[0]!.inflight === 1, 5_000, "call in flight");
    const t0 = Date.now();
    process.kill(pid, "SIGKILL");
    const err = await slow;
    expect(Date.now() - t0).to.be.below(1_000);
    expect(err).to.be.instanceOf(ReplicaCrashedError);
    // Sent while the replica restarts: served by the new incarnation, constructed with 5 again.
    expect(await svc.value()).to.equal(5);
  });

  it("a crash loop stops at maxRestarts and the replica is marked failed", async () => {
    const marker = join(tmpdir(), `actorbus-crashloop-${process.pid}-${Date.now()}`);
    try {
      const svc = await launch(
        CrashOnStart.options({ maxRestarts: 2, restartBackoffMs: 20, servers: testUrl(), namespace: ns }).asService(marker),
      );
      expect(await svc.ping()).to.equal("pong");
      writeFileSync(marker, "crash");
      await settle(svc.crash());
      await until(() => svc.status().replicas[0]!.state === "failed", 20_000, "replica marked failed");
      const r = svc.status().replicas[0]!;
      expect(r.restarts).to.equal(2);
      expect(r.lastError).to.match(/restart failed/).and.match(/code 3/);
      // Why it failed, for `actorbus status`: the budget is spent within its window.
      expect(r.reason).to.match(/^crash loop: 2 restarts within 60 s \(maxRestarts 2/).and.match(/code 3/);
      expect(svc.status().replicaStates).to.include({ failed: 1, healthy: 0 });
      const err = await settle(svc.ping());
      expect(err).to.be.instanceOf(ServiceUnavailableError);
      expect((err as Error).message).to.match(/failed/);
      expect(replicaPids(ns).length).to.equal(
        live.filter((s) => (s as unknown) !== svc).reduce((n, s) => n + s.status().replicas.reduce((m, x) => m + x.pids.length, 0), 0),
      );
    } finally {
      rmSync(marker, { force: true });
    }
  });
});
