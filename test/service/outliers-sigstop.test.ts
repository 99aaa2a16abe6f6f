import { expect } from "chai";
import { CallTimeoutError } from "../../src/errors/index.ts";
import type { ServiceProxy } from "../../src/service/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { isAlive, replicaPids } from "../helpers/replicas.ts";

/** Keeps `lanes` calls going until stop(); counts what came back, and when failures happened. */
function loadOf(svc: ServiceProxy<Counter>, lanes: number) {
  let running = true;
  const r = { ok: 0, failed: 0, failedAt: [] as number[], errors: [] as Error[] };
  const done = Promise.all(
    Array.from({ length: lanes }, async () => {
      while (running) {
        try {
          await svc.incr();
          r.ok++;
        } catch (err) {
          r.failed++;
          r.failedAt.push(Date.now());
          r.errors.push(err as Error);
        }
      }
    }),
  );
  return { r, stop: () => ((running = false), done) };
}

describe("services: outlier ejection of a frozen replica (SIGSTOP / SIGCONT)", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("olr");
  const live: ServiceProxy<Counter>[] = [];
  const stopped = new Set<number>();

  afterEach(() => {
    // Whatever happened, nothing stays frozen.
    for (const pid of stopped) if (isAlive(pid)) process.kill(pid, "SIGCONT");
    stopped.clear();
  });
  after(async () => {
    await Promise.all(live.map((s) => s.shutdown()));
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("takes a frozen replica out of routing after its first timeouts, probes it, and puts it back once it answers", async () => {
    const svc = await Counter.options({ numReplicas: 2, maxConcurrency: 4, timeoutMs: 1_000, servers: testUrl(), namespace: ns, meshName: "frozen" }).asService();
    live.push(svc);
    const lanes = 8;
    const load = loadOf(svc, lanes);
    await until(() => svc.status().replicas.every((r) => r.calls > 20), 10_000, "both replicas serving");
    const victim = svc.status().replicas[1]!;
    const sentBefore = victim.calls + victim.inflight;
    process.kill(victim.pids[0]!, "SIGSTOP");
    stopped.add(victim.pids[0]!);
    const frozenAt = Date.now();

    await until(() => svc.status().replicas[1]!.ejected, 5_000, "the frozen replica ejected");
    const ejectedAt = Date.now();
    const atEjection = svc.status().replicas[1]!;
    expect(atEjection.state).to.equal("healthy");
    expect(atEjection.reason).to.match(/ejected: .*no reply by their deadlines/);
    expect(svc.status().replicaStates).to.include({ healthy: 2, ejected: 1 });
    // Ejected within about one deadline of the freeze.
    expect(ejectedAt - frozenAt).to.be.below(1_000 + 1_000);
    const sentToFrozen = atEjection.calls + atEjection.inflight - sentBefore;

    // Out of routing: the other replica takes every call, none fails.
    const failedAtEjection = load.r.failed;
    const okAtEjection = load.r.ok;
    await until(() => load.r.ok > okAtEjection + 500, 10_000, "calls served while the replica is out");
    const during = svc.status().replicas[1]!;
    expect(during.calls + during.inflight - sentBefore, "no call routed to the ejected replica").to.equal(sentToFrozen);
    // At most the calls it held when frozen, plus a few routed before its timeouts showed.
    expect(sentToFrozen, `${sentToFrozen} calls went to the frozen replica`).to.be.at.most(lanes + 4);
    expect(load.r.failed).to.equal(failedAtEjection);
    expect(load.r.failedAt.every((t) => t <= ejectedAt + 50), "no failure after the ejection").to.equal(true);
    for (const e of load.r.errors) expect(e).to.be.instanceOf(CallTimeoutError);

    // Thawed: a probe finds it answering and routing resumes.
    process.kill(victim.pids[0]!, "SIGCONT");
    stopped.delete(victim.pids[0]!);
    await until(() => !svc.status().replicas[1]!.ejected, 10_000, "the replica back in routing");
    const back = svc.status().replicas[1]!.calls;
    await until(() => svc.status().replicas[1]!.calls > back + 20, 5_000, "calls reach it again");
    expect(svc.status().replicas[1]!.reason).to.equal("");
    expect(svc.status().replicas[1]!.pids[0], "the same process: ejected, never restarted").to.equal(victim.pids[0]);
    await load.stop();
    console.log(`      ${sentToFrozen} calls reached the frozen replica, ejected ${ejectedAt - frozenAt} ms after the freeze; ${load.r.failed} of ${load.r.ok + load.r.failed} calls failed`);
    // The calls it held when frozen (status counts lag, so bounded by the lanes) plus those routed to it after.
    expect(load.r.failed, `${load.r.failed} failed of ${load.r.ok + load.r.failed}`).to.be.at.most(lanes + sentToFrozen);
  });

  it("with outlierEjection false, a frozen replica keeps getting calls that time out", async () => {
    const svc = await Counter.options({ numReplicas: 2, timeoutMs: 500, outlierEjection: false, servers: testUrl(), namespace: ns, meshName: "noeject" }).asService();
    live.push(svc);
    const pid = svc.status().replicas[0]!.pids[0]!;
    process.kill(pid, "SIGSTOP");
    stopped.add(pid);
    const load = loadOf(svc, 4);
    await until(() => load.r.failed >= 8, 10_000, "timeouts keep coming");
    expect(svc.status().replicas[0]!.ejected).to.equal(false);
    await load.stop();
  });
});
