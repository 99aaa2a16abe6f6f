/**
 * The fault drills of issue 16, shared by the tests (which assert on them) and by
 * `npm run bench:faults` (which prints them): a frozen replica, a lame-duck move, an agent lost
 * and back, and a soak. Each runs under load from client processes (scenarios.ts) and reports
 * attempted / succeeded / typed / untyped failures / hung / wrong answers, plus its own figures.
 */
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { findNatsServerBinary } from "../../src/connection/index.ts";
import { getServices, startNatsServer, type Services } from "../../src/index.ts";
import { unwrapReply } from "../../src/reply/index.ts";
import type { ServiceReport } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { startNatsCluster } from "./cluster.ts";
import { until } from "./nats.ts";
import { isAlive } from "./replicas.ts";
import { run, underLoad, type LoadOptions, type Proc, type ScenarioReport } from "./scenarios.ts";

const DRILL_HOST = fileURLToPath(new URL("../fixtures/drill-host.ts", import.meta.url));
const AGENT_MAIN = fileURLToPath(new URL("../../src/agent/main.ts", import.meta.url));

/** The status of service "pid" from its controller, or undefined when it does not answer. */
async function serviceStatus(s: Services): Promise<ServiceReport | undefined> {
  const { codec, transport } = s.connection;
  try {
    return unwrapReply<ServiceReport>(codec, await transport.request(subjectsFor(s.namespace).controller("pid"), codec.encode({ op: "status" }), 1_000));
  } catch {
    return undefined;
  }
}

/** Failed calls the clients sent at or after `t` (epoch ms). */
const errorsFrom = (r: ScenarioReport, t: number) => (r.errorTimes ?? []).filter((x) => x >= t).length;

/** The report without the per-error times (they stay out of results.json). */
function finish(r: ScenarioReport, extra: Record<string, number | string | boolean>): ScenarioReport {
  const { errorTimes: _, ...rest } = r;
  return { ...rest, extra: { ...r.extra, ...extra } };
}

/**
 * One server; service "pid" with 2 replicas (child processes of a controller process); clients
 * call it through the registry with `callTimeoutMs` deadlines and no retries. One replica is
 * SIGSTOPped for `outageMs`, then SIGCONTed. Outlier ejection must take it out of routing after
 * its first timeouts (no failure after that) and put it back once it answers.
 */
export async function replicaFreeze(o: LoadOptions): Promise<ScenarioReport> {
  const server = await startNatsServer();
  let victim = 0;
  let frozenAt = 0;
  let ejectedAt = 0;
  let backAt = 0;
  let watcher: Services | undefined;
  let watching: Promise<void> | undefined;
  try {
    const r = await underLoad(
      `freeze: SIGSTOP one of 2 replicas for ${o.outageMs / 1000} s under load (${o.callTimeoutMs ?? 1_000} ms deadlines, no retries), then SIGCONT`,
      [],
      [server.url],
      {
        async startHosts(ctx) {
          const { first } = await ctx.start(DRILL_HOST, [JSON.stringify({ servers: [server.url], namespace: ctx.namespace, options: { numReplicas: 2, maxConcurrency: 8 } })]);
          victim = (JSON.parse(first) as { replicas: number[] }).replicas[1]!;
          watcher = await getServices({ servers: [server.url], namespace: ctx.namespace });
        },
        async kill() {
          process.kill(victim, "SIGSTOP");
          frozenAt = Date.now();
          const w = watcher!;
          watching = (async () => {
            while (!ejectedAt && Date.now() - frozenAt < o.outageMs) {
              if ((await serviceStatus(w))?.replicas[1]?.ejected) ejectedAt = Date.now();
              else await new Promise((r) => setTimeout(r, 20));
            }
          })();
        },
        async restore() {
          process.kill(victim, "SIGCONT");
          await watching;
          const w = watcher!;
          const thawed = Date.now();
          await until(async () => (await serviceStatus(w))?.replicas[1]?.ejected === false, 20_000, "the replica back in routing").catch(() => {});
          backAt = Date.now() - thawed;
        },
      },
      { ...o, retryBudgetMs: 0 },
    );
    return finish(r, {
      ejectedAfterMs: ejectedAt ? ejectedAt - frozenAt : -1,
      // Calls sent before the ejection may still fail at their deadlines after it; none sent after may.
      failuresAfterEjection: ejectedAt ? errorsFrom(r, ejectedAt) : -1,
      failureRate: Number(((r.failedTyped + r.failedUntyped + r.hung) / Math.max(1, r.attempted)).toFixed(5)),
      backInRoutingAfterThawMs: backAt,
    });
  } finally {
    if (victim && isAlive(victim)) process.kill(victim, "SIGCONT");
    await watcher?.close();
    await server.stop();
  }
}

/**
 * 2-node cluster (lame_duck_grace_period 2 s). On node 0: an agent, the controller of service
 * "pid" and its 2 replicas (placed by the agent), and client 0; client 1 is on node 1. Node 0 is
 * put in lame-duck mode (`nats-server --signal ldm=<pid>`) under load; clients do not retry, so
 * any call the move lost would count. Node 0 exits once its clients have left, and is restarted.
 */
export async function lameDuckMove(o: LoadOptions): Promise<ScenarioReport> {
  const cluster = await startNatsCluster(2, "ldm", 'lame_duck_duration: "30s"\nlame_duck_grace_period: "2s"');
  const [n0, n1] = cluster.urls as [string, string];
  let agent: Proc | undefined;
  let moved = 0;
  let exitedAfterMs = 0;
  try {
    const r = await underLoad(
      "lame duck: the server of an agent, a service's controller and replicas and a client enters lame-duck mode under load (2-node cluster, no retries)",
      [],
      cluster.urls,
      {
        async startHosts(ctx) {
          agent = run(AGENT_MAIN, ["--servers", n0, "--namespace", ctx.namespace, "--host-id", "ldm-a", "--cpus", "2"], undefined, ctx.env);
          await agent.line();
          await ctx.start(DRILL_HOST, [JSON.stringify({ servers: [n0], namespace: ctx.namespace, options: { numReplicas: 2, placement: "agents" } })]);
        },
        async kill() {
          const pid = cluster.nodes[0]!.pid!;
          execFileSync(findNatsServerBinary()!, ["--signal", `ldm=${pid}`]);
          const t0 = Date.now();
          await until(() => !isAlive(pid), 60_000, "the lame-duck server to exit");
          exitedAfterMs = Date.now() - t0;
        },
        async restore() {
          await cluster.nodes[0]!.restart();
          await cluster.ready();
        },
      },
      { ...o, retryBudgetMs: 0, callTimeoutMs: o.callTimeoutMs ?? 2_000 },
      (i) => [i % 2 === 0 ? n0 : n1],
    );
    moved = r.reconnects;
    return finish(r, { clientsMoved: moved, lameDuckServerExitedAfterMs: exitedAfterMs });
  } finally {
    if (agent) {
      agent.child.kill("SIGTERM");
      await new Promise((res) => (agent!.child.exitCode !== null || agent!.child.signalCode !== null ? res(undefined) : agent!.child.once("exit", res)));
    }
    await cluster.stop();
  }
}

/**
 * One server, two agents (one process slot each); service "pid" with a replica on each. Agent B
 * is SIGKILLed under load (its replica dies with it; no slot is left for it), stays away for
 * `outageMs`, and comes back with the same --host-id: the service must be back to 2 healthy
 * replicas within 5 s of its return. Clients retry retryable errors (a crash is one).
 */
export async function agentReturn(o: LoadOptions): Promise<ScenarioReport> {
  const server = await startNatsServer();
  const agents = new Map<string, Proc>();
  let watcher: Services | undefined;
  let namespace = "";
  let backMs = -1;
  let failedWhileAway = "";
  const startAgent = async (hostId: string) => {
    const a = run(AGENT_MAIN, ["--servers", server.url, "--namespace", namespace, "--host-id", hostId, "--cpus", "1", "--heartbeat-ms", "200"]);
    await a.line();
    agents.set(hostId, a);
  };
  const stopAgent = async (a: Proc, signal: NodeJS.Signals) => {
    if (a.child.exitCode !== null || a.child.signalCode !== null) return;
    const exited = new Promise((r) => a.child.once("exit", r));
    a.child.kill(signal);
    await exited;
  };
  try {
    const r = await underLoad(
      `agent: SIGKILL one of 2 agents (with its replica) under load, back after ${o.outageMs / 1000} s with the same --host-id`,
      [],
      [server.url],
      {
        async startHosts(ctx) {
          namespace = ctx.namespace;
          await startAgent("agent-a");
          await startAgent("agent-b");
          await ctx.start(DRILL_HOST, [JSON.stringify({ servers: [server.url], namespace, options: { numReplicas: 2, placement: "agents", healthIntervalMs: 200 } })]);
          watcher = await getServices({ servers: [server.url], namespace });
        },
        async kill() {
          await stopAgent(agents.get("agent-b")!, "SIGKILL");
          const w = watcher!;
          await until(async () => (await serviceStatus(w))?.replicaStates.failed === 1, 10_000, "the replica marked failed").catch(() => {});
          const st = await serviceStatus(w);
          failedWhileAway = st?.replicas.find((x) => x.state === "failed")?.reason ?? "";
        },
        async restore() {
          await startAgent("agent-b");
          const back = Date.now();
          const w = watcher!;
          await until(async () => (await serviceStatus(w))?.replicaStates.healthy === 2, 30_000, "2 healthy replicas").catch(() => {});
          backMs = Date.now() - back;
        },
      },
      o,
    );
    return finish(r, { fullReplicasAfterReturnMs: backMs, reasonWhileAway: failedWhileAway.slice(0, 160) });
  } finally {
    await watcher?.close();
    // After underLoad: the controller has stopped its replicas through the agents by now.
    await Promise.all([...agents.values()].map((a) => stopAgent(a, "SIGTERM")));
    await server.stop();
  }
}

export interface SoakOptions {
  durationMs: number;
  lanes: number;
  /** Samples taken over the run (the first one after warm-up). */
  samples?: number;
}

export interface SoakReport {
  scenario: string;
  durationMs: number;
  attempted: number;
  succeeded: number;
  failedTyped: number;
  failedUntyped: number;
  hung: number;
  wrongAnswers: number;
  errors: Record<string, number>;
  registryCycles: number;
  /** Least-squares slopes per minute of the run's samples (after warm-up). */
  slopes: { heapMBPerMin: number; rssMBPerMin: number; fdsPerMin: number; serverConsumersPerMin: number };
  first: { heapMB: number; rssMB: number; fds: number; serverConsumers: number };
  last: { heapMB: number; rssMB: number; fds: number; serverConsumers: number };
}

/**
 * Calls at full rate through a registry handle (host and caller in this process, so its heap,
 * RSS and file descriptors are the ones measured), with registry churn beside them (register,
 * list, remove), for `durationMs`; prints the slopes of heap, RSS, fds and the server's JetStream
 * consumers. Flat means no leak.
 */
export async function soak(o: SoakOptions): Promise<SoakReport> {
  const server = await startNatsServer();
  const services = await getServices({ servers: [server.url], namespace: `soak_${process.pid}` });
  const churn = await getServices({ servers: [server.url], namespace: `soak_${process.pid}` });
  const counts = { attempted: 0, succeeded: 0, failedTyped: 0, failedUntyped: 0, hung: 0, errors: {} as Record<string, number> };
  let cycles = 0;
  let running = true;
  try {
    await services.register("pid", class { pid() { return process.pid; } });
    const h = services.at<{ pid(): number }>("pid", { timeoutMs: 2_000 });
    const lanes = Array.from({ length: o.lanes }, async () => {
      while (running) {
        counts.attempted++;
        try {
          if ((await h.pid()) === process.pid) counts.succeeded++;
          else counts.failedUntyped++; // a wrong answer
        } catch (err) {
          const code = (err as { code?: string }).code ?? (err as Error).name;
          counts.errors[code] = (counts.errors[code] ?? 0) + 1;
          if ((err as { code?: string }).code) counts.failedTyped++;
          else counts.failedUntyped++;
        }
      }
    });
    const churning = (async () => {
      while (running) {
        const name = `c${cycles % 50}`;
        await churn.register(name, class { x() { return 1; } }).catch(() => {});
        await churn.list().catch(() => {});
        await churn.remove(name).catch(() => {});
        cycles++;
      }
    })();
    const jsm = await jetstreamManager(services.connection.nc!);
    const sample = async () => {
      const m = process.memoryUsage();
      const consumers = (await jsm.getAccountInfo().catch(() => undefined))?.consumers ?? -1;
      return { t: Date.now(), heapMB: m.heapUsed / 2 ** 20, rssMB: m.rss / 2 ** 20, fds: readdirSync("/proc/self/fd").length, serverConsumers: consumers };
    };
    const n = Math.max(3, o.samples ?? 20);
    const warmup = Math.min(10_000, o.durationMs / 10);
    await new Promise((r) => setTimeout(r, warmup));
    const points = [await sample()];
    const step = (o.durationMs - warmup) / (n - 1);
    for (let i = 1; i < n; i++) {
      await new Promise((r) => setTimeout(r, step));
      points.push(await sample());
    }
    running = false;
    await Promise.all([...lanes, churning]);
    const slope = (k: "heapMB" | "rssMB" | "fds" | "serverConsumers") => {
      const xs = points.map((p) => (p.t - points[0]!.t) / 60_000);
      const ys = points.map((p) => p[k]);
      const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
      const my = ys.reduce((a, b) => a + b, 0) / ys.length;
      const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
      const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
      return Number((den === 0 ? 0 : num / den).toFixed(3));
    };
    const pick = (p: (typeof points)[number]) => ({ heapMB: Number(p.heapMB.toFixed(1)), rssMB: Number(p.rssMB.toFixed(1)), fds: p.fds, serverConsumers: p.serverConsumers });
    return {
      scenario: `soak: ${o.durationMs / 1000} s of calls at full rate (${o.lanes} in flight) with registry churn (register, list, remove)`,
      durationMs: o.durationMs,
      ...counts,
      wrongAnswers: counts.failedUntyped,
      registryCycles: cycles,
      slopes: { heapMBPerMin: slope("heapMB"), rssMBPerMin: slope("rssMB"), fdsPerMin: slope("fds"), serverConsumersPerMin: slope("serverConsumers") },
      first: pick(points[0]!),
      last: pick(points[points.length - 1]!),
    };
  } finally {
    running = false;
    await churn.close().catch(() => {});
    await services.close().catch(() => {});
    await server.stop();
  }
}
