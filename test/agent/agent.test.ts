import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { startAgent, type Agent } from "../../src/agent/index.ts";
import { InvalidOptionsError, PlacementError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { liveAgents } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { isAlive, replicaPids, startAgentProcess, stopAllAgents, type AgentProcess } from "../helpers/replicas.ts";

const quiet = { stdout: { write: () => true }, stderr: process.stderr } as unknown as { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

describe("agents: three hosts as three agent processes", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("ag3");
  let agents: AgentProcess[] = [];
  let services: Services;

  before(async () => {
    agents = await Promise.all(["host-a", "host-b", "host-c"].map((h) => startAgentProcess(testUrl(), ns, h, ["--cpus", "2"])));
    services = await getServices({ namespace: ns, servers: testUrl() });
  });
  after(async () => {
    await services?.close();
    await stopAllAgents();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("places 3 replicas on 3 agents with distinct host ids; an agent's death moves its replica", async () => {
    const hosts = await liveAgents(services.connection, subjectsFor(ns));
    expect(hosts.map((h) => h.hostId)).to.deep.equal(["host-a", "host-b", "host-c"]);

    const svc = await Counter.options({ numReplicas: 3, services, healthIntervalMs: 200 }).asService();
    try {
      expect(svc.status().placement).to.equal("agents");
      const who = await svc.whoami.fanout();
      expect(who.map((w) => w.host).sort()).to.deep.equal(["host-a", "host-b", "host-c"]);
      expect(who.map((w) => [w.rank, w.size])).to.deep.equal([[0, 1], [0, 1], [0, 1]]);
      // The agents account for what they run.
      const used = await liveAgents(services.connection, subjectsFor(ns));
      expect(used.map((h) => h.usedCpus)).to.deep.equal([1, 1, 1]);
      // Agent processes are the replicas' parents: the replicas are not the caller's children.
      expect(replicaPids(ns)).to.have.length(3);

      // A host dies with its replica (SIGKILL: no exit event). The heartbeat notices, the
      // replica restarts on a surviving host.
      const b = agents.find((a) => a.hostId === "host-b")!;
      const idx = svc.status().replicas.findIndex((r) => r.hosts[0] === "host-b");
      const oldPid = svc.status().replicas[idx]!.pids[0]!;
      await b.kill();
      await until(() => !isAlive(oldPid), 5_000, "replica exits with its agent");
      await until(() => svc.status().replicas[idx]!.state === "healthy" && svc.status().replicas[idx]!.hosts[0] !== "host-b", 15_000, "replica restarted elsewhere");
      expect(svc.status().replicas[idx]!.lastError).to.match(/heartbeat|exited|listening/);
      const after = await svc.whoami.fanout();
      expect(after.map((w) => w.host)).to.not.include("host-b");
      expect(await svc.incr()).to.be.a("number");
    } finally {
      await svc.shutdown();
    }
    expect(replicaPids(ns)).to.deep.equal([]);
    const idle = await liveAgents(services.connection, subjectsFor(ns));
    expect(idle.map((h) => [h.hostId, h.usedCpus])).to.deep.equal([["host-a", 0], ["host-c", 0]]);
  });

  it("a stopped agent removes its host key", async () => {
    const c = agents.find((a) => a.hostId === "host-c")!;
    await c.stop();
    expect(c.output.join("\n")).to.match(/agent host-c stopped/);
    const hosts = await liveAgents(services.connection, subjectsFor(ns));
    expect(hosts.map((h) => h.hostId)).to.deep.equal(["host-a"]);
  });
});

describe("agents: placement, GPUs, leases (in-process agents)", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("agp");
  const agents: Agent[] = [];
  let services: Services;
  const agent = async (hostId: string, o: { cpus?: number; gpus?: number; leaseCheckMs?: number; leaseTimeoutMs?: number } = {}) => {
    const a = await startAgent({ servers: testUrl(), namespace: ns, hostId, output: quiet, ...o });
    agents.push(a);
    return a;
  };

  before(async () => {
    services = await getServices({ namespace: ns, servers: testUrl() });
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
  });
  after(async () => {
    await services?.close();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("refuses a second agent with the same host id", async () => {
    await agent("dup");
    try {
      await agent("dup");
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(InvalidOptionsError);
      expect((err as Error).message).to.match(/host id "dup" is already served by a running agent/).and.match(/--host-id/);
    }
  });

  it("fails fast, naming what is missing, when placement cannot be met", async () => {
    await agent("x", { cpus: 1 });
    await agent("y", { cpus: 1 });
    const t0 = Date.now();
    for (const [opts, why] of [
      [{ numReplicas: 3 }, /replica 3 of 3.*needs 1 process slot\(s\), 0 free/],
      [{ procs: 3, hosts: 3 }, /needs 3 hosts with 1 free process slot\(s\) each, 2 qualify/],
      [{ withGpus: true }, /GPU/],
    ] as const) {
      try {
        await Counter.options({ ...opts, services }).asService();
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(PlacementError);
        expect((err as Error).message).to.match(why).and.match(/x: 1 process slots/).and.match(/actorbus agent/);
      }
    }
    expect(Date.now() - t0).to.be.below(5_000);
    expect(replicaPids(ns)).to.deep.equal([]);
    expect(await services.list()).to.deep.equal([]);
  });

  it("withGpus: an agent with --gpus 0 cannot take it; one with --gpus 2 gives each process its own GPU", async () => {
    await agent("g0", { gpus: 0 });
    try {
      await Counter.options({ withGpus: true, services }).asService();
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(PlacementError);
      expect((err as Error).message).to.match(/needs 1 GPU\(s\) \(withGpus: one per process\), 0 free/).and.match(/g0: \d+ process slots, 0 GPUs free/);
    }
    await agent("g2", { gpus: 2, cpus: 4 });
    const svc = await Counter.options({ withGpus: true, numReplicas: 2, services }).asService();
    try {
      const who = await svc.whoami.fanout();
      expect(who.map((w) => w.host)).to.deep.equal(["g2", "g2"]);
      expect(who.map((w) => w.gpus).sort()).to.deep.equal(["0", "1"]);
      // Both GPUs are taken now: a third GPU replica cannot be placed.
      try {
        await Counter.options({ withGpus: true, services, meshName: "more" }).asService();
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(PlacementError);
      }
    } finally {
      await svc.shutdown();
    }
  });

  it("splits one replica of procs 2 over hosts 2: rank 0 and rank 1 on different agents", async () => {
    await agent("p", { cpus: 1 });
    await agent("q", { cpus: 1 });
    const svc = await Counter.options({ procs: 2, hosts: 2, services }).asService();
    try {
      const ranks = await svc.whoami.ranks();
      expect(ranks.map((r) => [r.rank, r.size])).to.deep.equal([[0, 2], [1, 2]]);
      expect(ranks.map((r) => r.host).sort()).to.deep.equal(["p", "q"]);
    } finally {
      await svc.shutdown();
    }
  });

  it("placement 'local' runs replicas on the caller's machine even with agents running", async () => {
    const a = await agent("busy");
    const svc = await Counter.options({ placement: "local", services }).asService();
    try {
      expect(svc.status().placement).to.equal("local");
      expect(a.processes()).to.deep.equal([]);
      expect(await svc.incr()).to.equal(1);
    } finally {
      await svc.shutdown();
    }
  });

  it("stops the replicas of a controller process that died (lease)", async () => {
    const a = await agent("lease", { leaseCheckMs: 100, leaseTimeoutMs: 300 });
    const script = fileURLToPath(new URL("../fixtures/replicas/controller.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", script, testUrl(), ns], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        child.once("exit", (code) => reject(new Error(`controller exited with ${code}`)));
        createInterface({ input: child.stdout! }).once("line", resolve);
      });
      const { pids } = JSON.parse(line) as { pids: number[] };
      expect(a.processes().map((x) => x.pid)).to.deep.equal(pids);
      child.kill("SIGKILL");
      await until(() => a.processes().length === 0 && pids.every((p) => !isAlive(p)), 10_000, "orphaned replica stopped");
    } finally {
      child.kill("SIGKILL");
    }
  });
});
