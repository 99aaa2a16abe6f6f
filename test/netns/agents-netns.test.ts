/**
 * Hosts on separate network stacks. The other agent tests run every "host" on this machine's
 * loopback, so a bug that only shows when replicas sit behind another network interface (a
 * replica handed 127.0.0.1, a URL that only works locally, a fault that is really a network
 * fault and not a process exit) would pass them. Here each host agent runs in its own Linux
 * network namespace (own loopback, own routes), joined to the root namespace (this test and its
 * nats-server) by its own veth link on a private /30: as close to separate hosts as one machine
 * gets. The test checks that replicas really run there (their /proc/<pid>/ns/net, and the
 * server's /connz showing them connect from the veth addresses), that calls are answered, and
 * that cutting one host's link (a partition: nothing exits, packets just stop) is detected, the
 * service keeps answering from the other host, and the replica it replaced is stopped once the
 * link is back.
 *
 * Needs root and iproute2 (`ip netns`); skipped with the reason elsewhere. Run it alone with:
 *   npx mocha test/netns/agents-netns.test.ts
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { freePort, startNatsServer, type NatsServerProcess } from "../../src/connection/index.ts";
import { CallTimeoutError, ReplicaCrashedError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { liveAgents, type ServiceProxy } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { uniqueNamespace, until } from "../helpers/nats.ts";
import { createNetns, listNetns, netnsGroup, netnsOf, netnsUnavailable, removeStaleNetns, type Netns } from "../helpers/netns.ts";
import { isAlive } from "../helpers/replicas.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const AGENT_MAIN = fileURLToPath(new URL("../../src/agent/main.ts", import.meta.url));

/** Replica processes (replica-main.ts) running in a namespace. */
function replicasIn(netns: Netns): number[] {
  return netns.pids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("replica-main.ts");
    } catch {
      return false;
    }
  });
}

interface NsAgent {
  hostId: string;
  netns: Netns;
  child: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

interface Conn {
  ip: string;
  port: number;
  name?: string;
}

describe("agents in separate network namespaces (veth to the server)", function () {
  this.timeout(90_000);
  const ns = uniqueNamespace("netns");
  const user = "ab";
  const pass = randomBytes(12).toString("hex");
  let group = "";
  const spaces: Netns[] = [];
  const agents: NsAgent[] = [];
  let server: NatsServerProcess | undefined;
  let monitorPort = 0;
  let services: Services | undefined;
  let svc: ServiceProxy<Counter> | undefined;

  const connz = async (): Promise<Conn[]> => {
    const res = await fetch(`http://127.0.0.1:${monitorPort}/connz?limit=4096`);
    return ((await res.json()) as { connections?: Conn[] }).connections ?? [];
  };
  const agentOf = (hostId: string) => agents.find((a) => a.hostId === hostId)!;
  /** until(), with the state at the timeout (not at the start) in the message. */
  const waitFor = (cond: () => boolean | Promise<boolean>, ms: number, what: string, detail: () => string) =>
    until(cond, ms, what).catch((err: Error) => {
      throw new Error(`${err.message}\n${detail()}`);
    });
  const logs = () => agents.map((a) => `--- ${a.hostId} (${a.netns.name}):\n${a.output.slice(-40).join("\n")}`).join("\n");

  const startAgentIn = async (netns: Netns, hostId: string, url: string): Promise<NsAgent> => {
    // ip netns exec setns()es and execs node: the child's pid is the agent's. The working
    // directory is the checkout, the agent's default root of modules it may start.
    const [bin, ...args] = netns.command([process.execPath, "--import", "tsx", AGENT_MAIN, "--servers", url, "--namespace", ns, "--host-id", hostId, "--cpus", "2"]);
    const child = spawn(bin, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NATS_USER: user, NATS_PASSWORD: pass } });
    const output: string[] = [];
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    const a: NsAgent = { hostId, netns, child, output, exited };
    agents.push(a);
    for (const s of [child.stdout!, child.stderr!]) createInterface({ input: s }).on("line", (l) => output.push(l));
    const ready = () => output.some((l) => l.startsWith(`agent ${hostId} ready`));
    await until(() => ready() || child.exitCode !== null, 30_000, `agent ${hostId} ready in ${netns.name}`).catch(() => {});
    if (!ready()) throw new Error(`agent ${hostId} in ${netns.name} not ready (exit code ${child.exitCode}):\n${output.join("\n")}`);
    return a;
  };

  const stopAgent = async (a: NsAgent, graceMs: number) => {
    if (a.child.exitCode !== null || a.child.signalCode !== null) return;
    a.child.kill("SIGTERM");
    const t = setTimeout(() => a.child.kill("SIGKILL"), graceMs);
    await a.exited;
    clearTimeout(t);
  };

  before(async function () {
    const missing = netnsUnavailable();
    if (missing) {
      console.log(`    skipped: ${missing}`);
      this.skip();
    }
    removeStaleNetns();
    group = netnsGroup();
    spaces.push(createNetns(group, "a"), createNetns(group, "b"));
    monitorPort = await freePort();
    // Listening on every interface (the namespaces reach it through their veth's root end), so
    // it has a password; monitoring stays on loopback. Pings every second, two missed make a
    // stale connection: the server notices a cut link in ~3 s instead of its default minutes.
    server = await startNatsServer({
      args: ["-a", "0.0.0.0"],
      config: `ping_interval: "1s"\nping_max: 2\nhttp: "127.0.0.1:${monitorPort}"\nauthorization {\n  user: "${user}"\n  password: "${pass}"\n}\n`,
    });
    await Promise.all([
      startAgentIn(spaces[0]!, "ns-a", `nats://${spaces[0]!.hostIp}:${server.port}`),
      startAgentIn(spaces[1]!, "ns-b", `nats://${spaces[1]!.hostIp}:${server.port}`),
    ]);
    services = await getServices({ namespace: ns, servers: server.url, user, pass, devServer: "never" });
    await until(async () => (await liveAgents(services!.connection, subjectsFor(ns))).length === 2, 10_000, "both host keys in the registry");
  });

  after(async function () {
    this.timeout(30_000);
    await svc?.shutdown().catch(() => {});
    await services?.close().catch(() => {});
    await Promise.all(agents.map((a) => stopAgent(a, 2_000)));
    // Whatever still runs inside (a replica cut off with its host) is killed with its namespace.
    await Promise.all(spaces.map((s) => s.destroy()));
    await server?.stop();
    if (group) expect(listNetns(group), "namespaces left behind").to.deep.equal([]);
  });

  it("replicas run inside the agents' namespaces, connect over the veth links, and answer calls", async () => {
    const [a, b] = spaces as [Netns, Netns];
    const self = netnsOf("self");
    expect(a.id).to.not.equal(self);
    expect(b.id).to.not.equal(self);
    expect(a.id).to.not.equal(b.id);
    for (const ag of agents) {
      expect(netnsOf(ag.child.pid!), `agent ${ag.hostId}`).to.equal(ag.netns.id);
      expect(ag.netns.pids()).to.include(ag.child.pid);
    }

    svc = await Counter.options({ numReplicas: 2, services, healthIntervalMs: 200, timeoutMs: 3_000, maxTaskRetries: 1, drainTimeoutMs: 1_000 }).asService();
    const st = svc.status();
    expect(st.placement).to.equal("agents");
    expect(st.replicas.map((r) => r.hosts).sort()).to.deep.equal([["ns-a"], ["ns-b"]]);

    // The calls are right, and each replica is its own process with its own state.
    const who = await svc.whoami.fanout();
    expect(who.map((w) => w.host).sort()).to.deep.equal(["ns-a", "ns-b"]);
    const sums = await svc.addToValue.fanout(5, 2);
    expect(sums).to.deep.equal([10, 10]);
    const got = await Promise.all(Array.from({ length: 20 }, () => svc!.incr(1)));
    expect(got.every((n) => Number.isInteger(n) && n > 10)).to.equal(true);
    expect((await svc.value.fanout()).reduce((s, v) => s + v, 0)).to.equal(20 + 20);
    await svc.session(async (s) => {
      const first = await s.incr(100);
      expect(await s.incr(1)).to.equal(first + 1);
    });

    // Each replica process runs in the network namespace of the agent that started it.
    for (const r of svc.status().replicas) {
      const host = agentOf(r.hosts[0]!);
      for (const pid of r.pids) {
        expect(netnsOf(pid), `replica ${r.index} pid ${pid} on ${host.hostId}`).to.equal(host.netns.id).and.not.equal(self);
        expect(host.netns.pids()).to.include(pid);
      }
      expect(who.find((w) => w.host === host.hostId)!.pid).to.equal(r.pids[0]);
    }

    // The server sees the agents and replicas connect from the namespaces' veth addresses, and
    // only this process from loopback.
    const conns = await connz();
    const from = (name: string) => conns.filter((c) => c.name === name).map((c) => c.ip);
    for (const ag of agents) expect(from(`actorbus-agent-${ag.hostId}`), ag.hostId).to.deep.equal([ag.netns.nsIp]);
    for (const r of svc.status().replicas) {
      expect(from(`actorbus-replica-counter#${r.index}.0`), `replica ${r.index}`).to.deep.equal([agentOf(r.hosts[0]!).netns.nsIp]);
    }
    const ips = new Set(conns.map((c) => c.ip));
    expect([...ips].sort()).to.deep.equal(["127.0.0.1", a.nsIp, b.nsIp].sort());
  });

  it("a host whose link goes down is detected; its replica moves to the other host, calls keep succeeding, and the replaced replica is stopped once the link is back", async () => {
    expect(svc, "the service of the first test").to.not.equal(undefined);
    const s = svc!;
    const cut = agentOf("ns-a");
    const other = agentOf("ns-b");
    const idx = s.status().replicas.findIndex((r) => r.hosts[0] === cut.hostId);
    const oldPid = s.status().replicas[idx]!.pids[0]!;
    const timeoutMs = 3_000;

    // Steady load from 4 lanes while the link is cut.
    type Outcome = { t0: number; ms: number; host?: string; err?: unknown };
    const outcomes: Outcome[] = [];
    let loading = true;
    const lanes = Array.from({ length: 4 }, async () => {
      while (loading) {
        const t0 = Date.now();
        try {
          const w = await s.whoami();
          outcomes.push({ t0, ms: Date.now() - t0, host: w.host });
        } catch (err) {
          outcomes.push({ t0, ms: Date.now() - t0, err });
        }
      }
    });
    try {
      await until(() => outcomes.filter((o) => o.host === cut.hostId).length >= 5, 5_000, "calls reaching both hosts before the cut");
      const cutAt = Date.now();
      cut.netns.setLink(false);
      // Before the server notices (its pings), the cut agent's subscription is still there: a
      // ping to it times out rather than failing at once. It has stopped heartbeating, though,
      // so it is not offered for placement (a restart sent there would wait its start timeout).
      const placeable = liveAgents(services!.connection, subjectsFor(ns)).then((h) => h.map((x) => x.hostId));

      await waitFor(() => {
        const r = s.status().replicas[idx]!;
        return r.state === "healthy" && r.hosts[0] === other.hostId;
        // ~13 s on a quiet machine (server ping timeout, two missed heartbeats, a fresh replica
        // process under tsx); a loaded 2-core CI machine stretches the last of these.
      }, 40_000, `replica ${idx} restarted on ${other.hostId}`, () => `${JSON.stringify(s.status().replicas)}\n${logs()}`);
      const recoveredAt = Date.now();
      expect(await placeable, "hosts offered for placement while the link is down").to.deep.equal([other.hostId]);
      const moved = s.status().replicas[idx]!;
      expect(moved.lastError).to.match(/heartbeat|exited|listens/);
      expect(moved.restarts).to.be.at.least(1);
      // The old replica is still running, cut off in its namespace: not a process exit.
      expect(isAlive(oldPid)).to.equal(true);
      expect(netnsOf(oldPid)).to.equal(cut.netns.id);

      // Calls keep being answered while the host is cut off (by the other host) ...
      const during = outcomes.filter((o) => o.t0 > cutAt && o.t0 + o.ms < recoveredAt);
      expect(during.filter((o) => o.host === other.hostId).length, "calls answered by the other host during the outage").to.be.above(10);
      // ... and after the move, every call succeeds there.
      await until(() => outcomes.filter((o) => o.t0 > recoveredAt).length >= 40, 10_000, "calls after the recovery");
      loading = false;
      await Promise.all(lanes);
      const afterMove = outcomes.filter((o) => o.t0 > recoveredAt);
      expect(afterMove.filter((o) => o.err).map((o) => String(o.err)), "failed calls after the recovery").to.deep.equal([]);
      expect(new Set(afterMove.map((o) => o.host))).to.deep.equal(new Set([other.hostId]));

      // What failed during the outage failed with a retryable, typed error by its deadline: no
      // call hung, none was answered by the cut-off host after the cut.
      for (const o of outcomes) {
        expect(o.ms, "no call outlives its deadline").to.be.below(timeoutMs + 1_000);
        if (o.err) expect(o.err).to.satisfy((e: unknown) => e instanceof CallTimeoutError || e instanceof ReplicaCrashedError, String(o.err));
      }
      expect(outcomes.filter((o) => o.host === cut.hostId && o.t0 > cutAt + 100)).to.deep.equal([]);
    } finally {
      loading = false;
      await Promise.all(lanes);
    }

    // Both replicas now run in the other host's namespace, and the registry lost the cut host.
    const who = await s.whoami.fanout();
    expect(who.map((w) => w.host)).to.deep.equal([other.hostId, other.hostId]);
    for (const w of who) expect(netnsOf(w.pid)).to.equal(other.netns.id);
    const hosts = await liveAgents(services!.connection, subjectsFor(ns));
    expect(hosts.map((h) => [h.hostId, h.usedCpus])).to.deep.equal([[other.hostId, 2]]);
    // The server dropped the cut-off connections as stale (pings unanswered).
    let conns: Conn[] = [];
    await waitFor(async () => (conns = await connz()).every((c) => c.ip !== cut.netns.nsIp), 5_000, "the server to drop the cut-off connections", () => JSON.stringify(conns));

    // The link comes back: the agent and its old replica reconnect. That replica was replaced,
    // so the stop the service could not deliver during the outage reaches the agent now.
    cut.netns.setLink(true);
    await until(async () => (await liveAgents(services!.connection, subjectsFor(ns))).some((h) => h.hostId === cut.hostId), 15_000, `${cut.hostId} back in the registry`);
    await waitFor(() => !isAlive(oldPid), 10_000, `the replaced replica ${oldPid} stopped after the link came back`, logs);
    let slots = "";
    await waitFor(async () => {
      slots = JSON.stringify((await liveAgents(services!.connection, subjectsFor(ns))).map((x) => [x.hostId, x.usedCpus]));
      return slots === JSON.stringify([[cut.hostId, 0], [other.hostId, 2]]);
    }, 5_000, "the cut host's process slot freed", () => slots);
    expect(replicasIn(cut.netns)).to.deep.equal([]);
    expect(s.status().replicas.map((r) => [r.state, r.hosts[0]])).to.deep.equal([["healthy", other.hostId], ["healthy", other.hostId]]);
    expect((await s.whoami.fanout()).map((w) => w.host)).to.deep.equal([other.hostId, other.hostId]);
  });

  it("an agent cut off from NATS still stops on SIGTERM: its shutdown does not wait for the network", async () => {
    const cut = agentOf("ns-a");
    expect(cut.child.exitCode).to.equal(null);
    cut.netns.setLink(false);
    const t0 = Date.now();
    cut.child.kill("SIGTERM");
    const watchdog = setTimeout(() => cut.child.kill("SIGKILL"), 20_000);
    await cut.exited;
    clearTimeout(watchdog);
    // Its own exit, within stopGraceMs (3 s) for the registry and the 5 s drain bound.
    expect(cut.child.signalCode, "killed by the watchdog: stop() waited for the network").to.equal(null);
    expect(cut.child.exitCode).to.equal(0);
    expect(Date.now() - t0).to.be.below(15_000);
    cut.netns.setLink(true);
  });
});
