import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connect, createInbox, type NatsConnection } from "@nats-io/transport-node";
import { unwrapReply } from "../../src/actor/index.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { createCodec } from "../../src/codec/index.ts";
import { errorClassFor } from "../../src/errors/index.ts";
import { ActorBusError, getServices, startNatsServer } from "../../src/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { startNatsCluster } from "./cluster.ts";
import { hostilePayload, seededRandom } from "./hostile-payloads.ts";
import { createNetns, netnsGroup } from "./netns.ts";
import { uniqueNamespace, until } from "./nats.ts";

/**
 * Fault scenarios under steady load, shared by the tests (which assert on the counts) and by
 * `npm run bench -- faults` (which prints them). Hosts and clients are separate OS processes.
 */
export interface ScenarioReport {
  scenario: string;
  attempted: number;
  succeeded: number;
  failedTyped: number;
  failedUntyped: number;
  hung: number;
  retries: number;
  reconnects: number;
  successRate: number;
  errors: Record<string, number>;
  registryBefore: string[];
  registryAfter: string[];
  /** From the end of the fault (server back, flood over, link up) to the first successful call made afterwards. */
  recoveryMs: number;
  /** The hostile-flood scenario: garbage sent, and what came back to the requests among it. */
  hostile?: FloodCounts;
  /**
   * Calls that ended with a non-retryable error although the service stayed registered (its
   * hosts only came and went): ServiceNotFoundError and the like. Must be 0 in every scenario.
   */
  wrongAnswers: number;
  /** When each call that failed was sent (epoch ms, sorted; the first 10,000 per client). */
  errorTimes?: number[];
  /** Figures particular to one drill (drills.ts). */
  extra?: Record<string, number | string | boolean>;
}

export interface FloodCounts {
  seed: number;
  sent: number;
  withReply: number;
  replies: number;
  typedErrors: number;
  /** Garbage that happened to be a valid call (e.g. a valid request with odd headers), answered normally. */
  results: number;
  /** Replies that were neither: must be 0. */
  untypedReplies: number;
}

const WORKER = fileURLToPath(new URL("../fixtures/worker.ts", import.meta.url));
const CLIENT = fileURLToPath(new URL("../fixtures/load-client.ts", import.meta.url));

export interface Proc {
  child: ChildProcess;
  line(): Promise<string>;
  close(): Promise<void>;
}

/** `wrap` runs the process elsewhere, e.g. inside a network namespace (Netns.command). */
export function run(script: string, args: string[], wrap?: (argv: string[]) => [string, ...string[]], env?: NodeJS.ProcessEnv): Proc {
  const argv = [process.execPath, "--import", "tsx", script, ...args];
  const [cmd, ...rest] = wrap ? wrap(argv) : (argv as [string, ...string[]]);
  const child = spawn(cmd, rest, { stdio: ["pipe", "pipe", "inherit"], env: env ? { ...process.env, ...env } : process.env });
  const rl = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    line: async () => {
      const r = await rl.next();
      if (r.done) throw new Error(`${script} exited without output`);
      return r.value;
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin!.end();
      const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

// The probe connects before the fault: recovery is measured on calls, not on connecting.
async function firstSuccessAfter(probe: Awaited<ReturnType<typeof getServices>>, service: string, since: number): Promise<number> {
  const h = probe.at<{ pid(): number }>(service, { timeoutMs: 500 });
  await until(async () => h.pid().then(() => true, () => false), 20_000, "the service to answer again");
  return Date.now() - since;
}

export interface LoadOptions {
  /** For a server with a password: every process of the scenario connects as this user. */
  auth?: { user: string; pass: string };
  clients: number;
  lanes: number;
  loadMs: number;
  outageMs: number;
  /** Deadline of each client call; default 1000. */
  callTimeoutMs?: number;
  /** How long clients retry retryable errors; 0: every error counts as a failure. Default 8000. */
  retryBudgetMs?: number;
}

/** A host process of the service: the URLs it connects to, and optionally where it runs. */
type HostAt = string[] | { urls: string[]; command(argv: string[]): [string, ...string[]] };

/** What a fault may act on besides servers: the service's host processes, and starting more. */
export interface FaultContext {
  namespace: string;
  hosts: Proc[];
  startHost(urls: string[]): Promise<Proc>;
  /** Starts a process that belongs to the scenario (stopped at its end); resolves with its first line. */
  start(script: string, args: string[]): Promise<{ proc: Proc; first: string }>;
  /** The connection options every process of the scenario uses (credentials). */
  env: NodeJS.ProcessEnv | undefined;
}

export interface Fault {
  prepare?(namespace: string): Promise<void>;
  /** Starts the service's hosts instead of `host-pid` workers at hostUrls. */
  startHosts?(ctx: FaultContext): Promise<void>;
  kill(namespace: string, ctx: FaultContext): Promise<void>;
  restore(ctx: FaultContext): Promise<void>;
}

export async function underLoad(
  scenario: string,
  hostUrls: HostAt[],
  clientUrls: string[],
  fault: Fault,
  o: LoadOptions,
  /** The URLs client process i is given (default: all); a cluster client learns the rest from the server. */
  clientUrlsOf: (i: number) => string[] = () => clientUrls,
): Promise<ScenarioReport> {
  const namespace = uniqueNamespace("fault");
  const procs: Proc[] = [];
  const env = o.auth && { NATS_USER: o.auth.user, NATS_PASSWORD: o.auth.pass };
  const hosts: Proc[] = [];
  const ctx: FaultContext = {
    namespace,
    hosts,
    env,
    async start(script, args) {
      const proc = run(script, args, undefined, env);
      procs.push(proc);
      return { proc, first: await proc.line() };
    },
    async startHost(urls) {
      const h = run(WORKER, ["host-pid", JSON.stringify({ url: urls, namespace })], undefined, env);
      procs.push(h);
      hosts.push(h);
      await h.line();
      return h;
    },
  };
  try {
    await fault.prepare?.(namespace);
    await fault.startHosts?.(ctx);
    for (const at of hostUrls) {
      const h = Array.isArray(at)
        ? run(WORKER, ["host-pid", JSON.stringify({ url: at, namespace })], undefined, env)
        : run(WORKER, ["host-pid", JSON.stringify({ url: at.urls, namespace })], at.command, env);
      procs.push(h);
      hosts.push(h);
      await h.line();
    }
    const admin = await getServices({ servers: clientUrls, namespace, reconnectTimeWaitMs: 50, ...o.auth });
    const registryBefore = await admin.list();
    const clients: Proc[] = [];
    for (let i = 0; i < o.clients; i++) {
      const c = run(CLIENT, [JSON.stringify({ servers: clientUrlsOf(i), namespace, service: "pid", timeoutMs: o.callTimeoutMs ?? 1_000, lanes: o.lanes, retryBudgetMs: o.retryBudgetMs ?? 8_000 })], undefined, env);
      clients.push(c);
      procs.push(c);
      await c.line();
    }
    const probe = await getServices({ servers: clientUrls, namespace, reconnectTimeWaitMs: 50, ...o.auth });
    await new Promise((r) => setTimeout(r, o.loadMs)); // steady load before the fault
    await fault.kill(namespace, ctx);
    await new Promise((r) => setTimeout(r, o.outageMs));
    await fault.restore(ctx);
    const back = Date.now();
    const recoveryMs = await firstSuccessAfter(probe, "pid", back);
    await probe.close();
    await new Promise((r) => setTimeout(r, o.loadMs)); // steady load after recovery
    const totals = { attempted: 0, succeeded: 0, failedTyped: 0, failedUntyped: 0, hung: 0, retries: 0, reconnects: 0, errors: {} as Record<string, number>, errorTimes: [] as number[] };
    await Promise.all(
      clients.map(async (c) => {
        const done = c.line();
        await c.close();
        const r = JSON.parse(await done) as typeof totals;
        for (const k of ["attempted", "succeeded", "failedTyped", "failedUntyped", "hung", "retries", "reconnects"] as const) totals[k] += r[k];
        for (const [k, v] of Object.entries(r.errors)) totals.errors[k] = (totals.errors[k] ?? 0) + v;
        totals.errorTimes.push(...(r.errorTimes ?? []));
      }),
    );
    let registryAfter: string[] = [];
    await until(async () => (registryAfter = await admin.list().catch(() => [])).length >= registryBefore.length, 15_000, "registry to be readable");
    // Cleanup may meet the tail of a leader election: retry while the registry says "retry".
    await until(async () => admin.reset().then(() => true, () => false), 15_000, "cleanup reset");
    await admin.close();
    const wrongAnswers = Object.entries(totals.errors).reduce((n, [code, count]) => n + (isRetryableCode(code) ? 0 : count), 0);
    totals.errorTimes.sort((a, b) => a - b);
    return { scenario, ...totals, successRate: totals.succeeded / Math.max(1, totals.attempted), registryBefore, registryAfter, recoveryMs, wrongAnswers };
  } finally {
    await Promise.all(procs.map((p) => p.close()));
  }
}

/** Whether errors with this code are retryable (the library's classes say; unknown codes are not). */
export function isRetryableCode(code: string): boolean {
  const cls = errorClassFor(code);
  return cls ? new cls("").retryable : false;
}

/**
 * 3-node cluster: the node holding the registry bucket's stream leader and one more die together
 * with the service's only host, so every call meets "nobody listening" while the registry has no
 * quorum (and, with `bucketReplicas: 1`, no copy of the bucket at all) to say why. Callers must
 * get retryable errors by their deadlines, never ServiceNotFoundError (the service stays
 * registered), and succeed once the nodes and a host are back.
 */
export async function registryQuorumLoss(o: LoadOptions & { bucketReplicas: 1 | 3 }): Promise<ScenarioReport> {
  const cluster = await startNatsCluster(3);
  let survivor = 0;
  try {
    return await underLoad(
      `cluster: the registry (${o.bucketReplicas === 1 ? "1 replica, its node" : "3 replicas, 2 nodes"} lost) loses quorum while the service's only host dies, under load`,
      [[cluster.urls[0]!]],
      cluster.urls,
      {
        async prepare(namespace) {
          // Whoever opens a bucket first sets its replicas: do it before the hosts and clients.
          const s = await getServices({ servers: cluster.urls, namespace, registryReplicas: o.bucketReplicas });
          await s.close();
        },
        async kill(namespace, ctx) {
          const leader = await streamLeader(cluster.urls[0]!, `KV_actorbus_${namespace}`);
          survivor = [0, 1, 2].find((i) => i !== leader)!;
          await Promise.all([
            ...[0, 1, 2].filter((i) => i !== survivor).map((i) => cluster.nodes[i]!.kill("SIGKILL")),
            ...ctx.hosts.splice(0).map((h) => killProc(h)),
          ]);
        },
        async restore(ctx) {
          await Promise.all([0, 1, 2].filter((i) => i !== survivor).map((i) => cluster.nodes[i]!.restart()));
          await cluster.ready();
          // Right after the restart the bucket's stream may still be electing its leader, and a
          // host cannot register without it: wait for a write to go through, and start the host
          // again if it still fails, as a supervisor would.
          await until(() => bucketWritable(cluster.urls[survivor]!, ctx.namespace), 20_000, "the registry bucket to take writes").catch(() => {});
          const end = Date.now() + 20_000;
          for (;;) {
            try {
              await ctx.startHost([cluster.urls[survivor]!]);
              return;
            } catch (err) {
              if (Date.now() > end) throw err;
              await new Promise((r) => setTimeout(r, 200));
            }
          }
        },
      },
      o,
      (i) => [cluster.urls[i % cluster.urls.length]!],
    );
  } finally {
    await cluster.stop();
  }
}

async function bucketWritable(url: string, namespace: string): Promise<boolean> {
  const nc = await connect({ servers: url });
  try {
    const kv = await new Kvm(nc).open(`actorbus_${namespace}`);
    await kv.put("drill.ready", new Uint8Array(0));
    return true;
  } catch {
    return false;
  } finally {
    await nc.close();
  }
}

async function streamLeader(url: string, stream: string): Promise<number> {
  const nc = await connect({ servers: url });
  try {
    const si = await (await jetstreamManager(nc)).streams.info(stream);
    return Number((si.cluster?.leader ?? "n0").replace(/^n/, ""));
  } finally {
    await nc.close();
  }
}

export async function killProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGKILL");
  await exited;
}

/** 3-node cluster; two hosts attached to different nodes; SIGKILL node 0, then bring it back. */
export async function clusterNodeKill(o: LoadOptions): Promise<ScenarioReport> {
  const cluster = await startNatsCluster(3);
  try {
    return await underLoad(
      "cluster: SIGKILL one of 3 nodes under load, then restart it",
      [[cluster.urls[0]!], [cluster.urls[1]!]],
      cluster.urls,
      { kill: () => cluster.nodes[0]!.kill("SIGKILL"), restore: async () => (await cluster.nodes[0]!.restart(), await cluster.ready()) },
      o,
      // Client i starts on node i % 3, so the killed node has clients that must fail over to
      // the nodes they learned of from the cluster.
      (i) => [cluster.urls[i % cluster.urls.length]!],
    );
  } finally {
    await cluster.stop();
  }
}

/** One server with file storage: SIGKILL it under load, restart it. */
export async function singleServerRestart(o: LoadOptions): Promise<ScenarioReport> {
  const server = await startNatsServer();
  try {
    return await underLoad(
      "single server: SIGKILL under load, restart (file storage)",
      [[server.url]],
      [server.url],
      { kill: () => server.kill("SIGKILL"), restore: () => server.restart() },
      o,
    );
  } finally {
    await server.stop();
  }
}

/**
 * Publishes hostile payloads at a service's call and control subjects as fast as the server takes
 * them (flush every batch), half of them as requests whose replies are checked for typed errors.
 */
function createFlooder(url: string, seed: number) {
  const codec = createCodec();
  const counts: FloodCounts = { seed, sent: 0, withReply: 0, replies: 0, typedErrors: 0, results: 0, untypedReplies: 0 };
  let nc: NatsConnection | undefined;
  let running: Promise<void> | undefined;
  let stop = false;
  return {
    counts,
    async start(namespace: string) {
      nc = await connect({ servers: url, noAsyncTraces: true });
      const inbox = createInbox();
      nc.subscribe(inbox, {
        callback: (_err, msg) => {
          counts.replies++;
          try {
            unwrapReply(codec, msg.data);
            counts.results++;
          } catch (err) {
            if (err instanceof ActorBusError) counts.typedErrors++;
            else counts.untypedReplies++;
          }
        },
      });
      const subjects = subjectsFor(namespace);
      const targets = [subjects.call("pid"), subjects.control("pid")];
      const valid = codec.encode(["pid", [], 1_000]);
      const rand = seededRandom(seed);
      const c = nc;
      running = (async () => {
        while (!stop) {
          for (let i = 0; i < 200; i++) {
            const p = hostilePayload(rand, valid);
            const reply = rand() < 0.5 ? inbox : undefined;
            if (reply) counts.withReply++;
            c.publish(targets[counts.sent % targets.length]!, p.data, { reply, headers: p.headers });
            counts.sent++;
          }
          await c.flush();
        }
      })();
    },
    async stop() {
      stop = true;
      await running;
    },
    async close() {
      await this.stop();
      await nc?.flush().catch(() => {});
      await nc?.close();
    },
  };
}

/** One server; hostile payloads flooded at the service's subjects while client processes call it. */
export async function hostileFlood(o: LoadOptions & { seed?: number }): Promise<ScenarioReport> {
  const server = await startNatsServer();
  const flood = createFlooder(server.url, o.seed ?? Math.floor(Math.random() * 2 ** 31));
  try {
    const report = await underLoad(
      "single server: hostile payloads flooded at the service under load",
      [[server.url]],
      [server.url],
      { kill: (ns) => flood.start(ns), restore: () => flood.stop() },
      o,
    );
    // Requests sent just before the flood stopped may still be answered: wait for the stragglers.
    await until(() => flood.counts.replies >= flood.counts.withReply, 5_000, "replies to every hostile request").catch(() => {});
    return { ...report, hostile: { ...flood.counts } };
  } finally {
    await flood.close();
    await server.stop();
  }
}

/**
 * One server reachable on loopback and through a veth link; one host of the service inside a
 * network namespace, one outside. The namespace's link goes down under load (no TCP reset:
 * packets just stop, as in a real partition), then comes back. The server pings every second
 * and drops the cut-off host after two missed pings; until then the queue group still sends it
 * calls, which time out and are retried. Needs root and `ip netns` (netnsUnavailable() says why not).
 */
export async function networkPartition(o: LoadOptions): Promise<ScenarioReport> {
  const group = netnsGroup();
  const ns = createNetns(group, "p");
  const user = "partition";
  const pass = randomBytes(12).toString("hex");
  try {
    // Every interface (the namespace reaches it through its veth), so it has a password.
    const server = await startNatsServer({
      args: ["-a", "0.0.0.0"],
      config: `ping_interval: "1s"\nping_max: 2\nauthorization {\n  user: "${user}"\n  password: "${pass}"\n}\n`,
    });
    const at = (host: string) => `nats://${host}:${server.port}`;
    try {
      return await underLoad(
        "partition: the link of one of 2 hosts goes down under load (no reset), then comes back",
        [{ urls: [at(ns.hostIp)], command: ns.command }, [at("127.0.0.1")]],
        [at("127.0.0.1")],
        { kill: async () => ns.setLink(false), restore: async () => ns.setLink(true) },
        { ...o, auth: { user, pass } },
      );
    } finally {
      await server.stop();
    }
  } finally {
    await ns.destroy();
  }
}
