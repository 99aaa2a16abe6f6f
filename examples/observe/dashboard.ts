/**
 * The live dashboard over a small working namespace: a host agent, a Counter service of two
 * replicas placed on it, a plain actor that sometimes fails, a batched inference server and a
 * Python executor, all under load; one replica is killed partway so its restart shows.
 *
 *   npx tsx examples/observe/dashboard.ts                  # then open http://127.0.0.1:8080/
 *   npx tsx examples/observe/dashboard.ts --seconds 20 --port 0
 *   npx tsx examples/observe/dashboard.ts --seconds 45 --screenshot docs/dashboard.png
 *
 * The same page for a namespace of your own: `npx actorbus dashboard --namespace N`.
 * Uses NATS_URL, else starts a private nats-server.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  createMetrics,
  getServices,
  InferenceServer,
  NatsTransport,
  PythonExecutorService,
  registerInference,
  startDashboard,
  startNatsServer,
  watchInference,
  type NatsServerProcess,
} from "../../src/index.ts";
import { Counter } from "../replicas/counter.ts";

const { values } = parseArgs({ options: { seconds: { type: "string" }, port: { type: "string" }, screenshot: { type: "string" } } });
const seconds = values.seconds === undefined ? Infinity : Number(values.seconds);
const namespace = process.env.ACTORBUS_EXAMPLE_NAMESPACE ?? "observe_demo";
let natsServer: NatsServerProcess | undefined;
const url = process.env.NATS_URL ?? (natsServer = await startNatsServer()).url;

/** `actorbus agent` as a child process, as a host would run it; resolves once it is ready. */
function startAgent(hostId: string): Promise<ChildProcess> {
  const main = fileURLToPath(new URL("../../src/agent/main.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", main, "--servers", url, "--namespace", namespace, "--host-id", hostId, "--cpus", "4"], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`agent ${hostId} exited with ${code}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => line.startsWith(`agent ${hostId} ready`) && resolve(child));
  });
}

/** A plain actor (services.register): its one instance shows as its replica. */
class Tokenizer {
  encode(text: string): number[] {
    if (Math.random() < 0.05) throw new Error("unknown token");
    return [...text].map((c) => c.charCodeAt(0));
  }
}

const agent = await startAgent("gpu-host-1");
// Whatever happens below, the agent (and the replicas it runs) do not outlive this process.
process.once("exit", () => agent.kill("SIGTERM"));
const metrics = await createMetrics();
const services = await getServices({ namespace, servers: url, metrics });
// Started first, so the registrations below show as registry events.
const dashboard = await startDashboard({ services, port: values.port === undefined ? 8080 : Number(values.port), intervalMs: 500, metrics, allowActions: true });
console.log(`dashboard at ${dashboard.url}`);
// maxTaskRetries: the calls a killed replica held are re-sent to the other one.
const counter = await Counter.options({ numReplicas: 2, maxTaskRetries: 1, services, restartBackoffMs: 500 }).asService();
await services.register("tokenizer", Tokenizer);
const policy = new InferenceServer((xs: number[]) => xs.map((x) => x * 2), new NatsTransport<number, number>({ connection: services.connection, namespace, name: "policy" }), {
  collate: (items) => items,
  maxBatchSize: 32,
  timeoutMs: 2,
}).start();
const unwatch = watchInference(metrics, "policy", policy);
await registerInference(services, "policy", policy);
await services.registerWithOptions("python", PythonExecutorService, { maxConcurrency: 16 }, { poolSize: 2, timeoutMs: 5_000 });

let running = true;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = () => {}; // a failed call shows on the page; the load goes on
const tokenizer = await services.get<Tokenizer>("tokenizer");
const python = await services.get<PythonExecutorService>("python");
const client = policy.client();
const loops = [
  (async () => {
    while (running) {
      await Promise.all([counter.incr().catch(quiet), counter.slowIncr(3 + Math.random() * 10).catch(quiet), tokenizer.encode("hello world").catch(quiet)]);
      await pause(10);
    }
  })(),
  (async () => {
    while (running) {
      await Promise.all(Array.from({ length: 24 }, (_, i) => client.call(i).catch(quiet)));
      await pause(50);
    }
  })(),
  (async () => {
    while (running) {
      await python.execute("sum(range(100000))").catch(quiet);
      await pause(200);
    }
  })(),
];

// A replica killed partway (as an OOM kill would): the page shows it restarting, then back.
const killAfterMs = Math.min(6_000, (seconds * 1000) / 3);
const killer = setTimeout(() => {
  const pid = counter.status().replicas[1]?.pids[0];
  if (pid) process.kill(pid, "SIGKILL");
}, killAfterMs);

await new Promise<void>((resolve) => {
  if (Number.isFinite(seconds)) setTimeout(resolve, seconds * 1000);
  process.once("SIGINT", () => resolve());
  process.once("SIGTERM", () => resolve());
});

if (values.screenshot) {
  // playwright-core drives Debian's chromium (a dev dependency: the package does not ship it).
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(dashboard.url);
  await page.waitForSelector('#live[data-state="open"]');
  await page.waitForSelector("#chart-rate svg path");
  await page.screenshot({ path: values.screenshot, fullPage: true });
  await browser.close();
  console.log(`screenshot saved to ${values.screenshot}`);
}

type Snapshot = {
  snapshots: { services: { name: string; kind: string; healthy: number; replicas: number }[]; replicas: { state: string; restarts: number }[] }[];
  events: { type: string }[];
};
// What the page shows now, once the killed replica is back (on a busy machine that takes a while).
let snap: Snapshot;
const until = Date.now() + 20_000;
do {
  snap = (await (await fetch(new URL("api/snapshot", dashboard.url))).json()) as Snapshot;
  if (snap.snapshots[0]!.replicas.every((r) => r.state === "healthy")) break;
  await pause(250);
} while (Date.now() < until);
const s = snap.snapshots[0]!;
console.log(`services: ${s.services.map((x) => `${x.name} (${x.kind}, ${x.healthy}/${x.replicas} healthy)`).join(", ")}`);
console.log(`restarts seen: ${s.replicas.reduce((n, r) => n + r.restarts, 0)}; events: ${snap.events.length}`);

clearTimeout(killer);
running = false;
await Promise.allSettled(loops);
await dashboard.close();
unwatch();
await counter.shutdown();
await services.close();
agent.kill("SIGTERM");
if (agent.exitCode === null) await new Promise((r) => agent.once("exit", r));
await natsServer?.stop();
console.log("done");
