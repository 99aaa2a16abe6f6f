import { expect } from "chai";
import { getServices, type Services } from "../../src/registry/index.ts";
import { collectStatus, formatStatus, type ServiceProxy } from "../../src/service/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { isAlive, replicaPids, startAgentProcess, stopAllAgents, type AgentProcess } from "../helpers/replicas.ts";

describe("agents: a replica lost with its agent is placed again when capacity appears (issue 16, item 2)", function () {
  this.timeout(90_000);
  const ns = uniqueNamespace("agr");
  let services: Services;
  let svc: ServiceProxy<Counter> | undefined;
  const agents = new Map<string, AgentProcess>();
  const agent = async (hostId: string) => {
    const a = await startAgentProcess(testUrl(), ns, hostId, ["--cpus", "1", "--heartbeat-ms", "200"]);
    agents.set(hostId, a);
    return a;
  };
  const replicaOn = (hostId: string) => svc!.status().replicas.find((r) => r.hosts.includes(hostId));

  before(async () => {
    services = await getServices({ namespace: ns, servers: testUrl() });
    await agent("host-a");
    await agent("host-b");
  });
  after(async () => {
    await svc?.shutdown();
    await services?.close();
    await stopAllAgents();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("waits, failed with the reason, without spending restarts; back within 5 s of the agent's return (same --host-id)", async () => {
    svc = await Counter.options({ numReplicas: 2, services, placement: "agents", healthIntervalMs: 200, maxRestarts: 3, restartBackoffMs: 100 }).asService();
    const lost = replicaOn("host-b")!;
    const pid = lost.pids[0]!;
    await agents.get("host-b")!.kill();
    await until(() => !isAlive(pid), 5_000, "the replica exits with its agent");
    await until(() => svc!.status().replicas[lost.index]!.state === "failed", 10_000, "the replica marked failed");
    const failed = svc!.status().replicas[lost.index]!;
    expect(failed.reason).to.match(/^waiting for capacity: cannot place replica/).and.match(/host-a: 0 process slots/);
    expect(failed.lastError).to.match(/heartbeat|exited|listening/);
    expect(svc!.status().replicaStates).to.include({ healthy: 1, failed: 1 });
    // Longer than the old budget took to burn (3 restarts in 1.2 s): it is waiting, not crash-looping.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(svc!.status().replicas[lost.index]!.state).to.equal("failed");
    expect(svc!.status().replicas[lost.index]!.restarts, "no restart spent on a missing host").to.equal(0);
    expect(await svc!.incr()).to.be.a("number"); // the other replica serves meanwhile

    // `actorbus status` says why.
    const text = formatStatus(await collectStatus(services));
    expect(text).to.match(/REASON/).and.match(/failed .*waiting for capacity/);

    await agent("host-b");
    const back = Date.now();
    await until(() => svc!.status().replicas[lost.index]!.state === "healthy", 5_000, "the replica placed again within 5 s");
    console.log(`      replica back ${Date.now() - back} ms after its agent returned`);
    expect(replicaOn("host-b")?.index).to.equal(lost.index);
    expect(svc!.status().replicas[lost.index]!.reason).to.equal("");
    expect(svc!.status().replicas[lost.index]!.restarts).to.equal(1);
    expect((await svc!.whoami.fanout()).map((w) => w.host).sort()).to.deep.equal(["host-a", "host-b"]);
  });

  it("is placed on a new agent that joins with another host id", async () => {
    const lost = replicaOn("host-b")!;
    await agents.get("host-b")!.kill();
    await until(() => svc!.status().replicas[lost.index]!.state === "failed", 10_000, "the replica marked failed");
    await agent("host-c");
    await until(() => svc!.status().replicas[lost.index]!.state === "healthy", 5_000, "the replica placed on the new agent");
    expect(replicaOn("host-c")?.index).to.equal(lost.index);
    expect((await svc!.whoami.fanout()).map((w) => w.host).sort()).to.deep.equal(["host-a", "host-c"]);
  });
});
